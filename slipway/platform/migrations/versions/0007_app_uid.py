"""apps.uid: the key of an app's repository, build logs and Docker objects

An app's name can be taken again once the app is destroyed; its uid never is, so
what a destroyed app leaves behind never reaches the next app of that name. Apps
that exist already keep their name as their uid: their repositories, networks,
containers and images are named by it and keep working.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uid", sa.String(length=32), nullable=True))
    op.execute("UPDATE apps SET uid = name")
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.alter_column("uid", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint("uq_apps_uid", ["uid"])


def downgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_constraint("uq_apps_uid", type_="unique")
        batch_op.drop_column("uid")
