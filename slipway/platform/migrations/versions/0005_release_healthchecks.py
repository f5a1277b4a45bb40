"""releases: the resolved health checks of their web containers

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: releases made before this revision get the settings' default check.
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("healthchecks", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("healthchecks")
