"""capsules.version: always the major version (PostgreSQL 15, 17, 18; Redis 7, 8)

Capsules are now created with a version. Those made before kept the tag of the image
they were started from ("15", "7", or "16" for postgres:16, "7.2-alpine" for a tag
like that): their version becomes the major of their image's tag, so they keep
working and show what they run. One never started yet (no image) gets its version
when it is provisioned.

Revision ID: 0008
Revises: 0007
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def major_of(image: str) -> str:
    """The major version in an image reference's tag ("slipway/postgres:15" -> "15")."""
    tag = image.rsplit("/", 1)[-1].rpartition(":")[2]
    match = re.match(r"[0-9]+", tag)
    return match.group() if match else ""


def upgrade() -> None:
    capsules = sa.table("capsules", sa.column("id", sa.Integer), sa.column("image", sa.String),
                        sa.column("version", sa.String))
    connection = op.get_bind()
    for row in connection.execute(sa.select(capsules.c.id, capsules.c.image, capsules.c.version)):
        version = major_of(row.image or "")
        if version and version != row.version:
            connection.execute(capsules.update().where(capsules.c.id == row.id)
                               .values(version=version))


def downgrade() -> None:
    # The versions stay majors: the older code reads them the same way.
    pass
