"""formations: the scale of each process type

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "formations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("process_type", sa.String(length=30), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "process_type"),
    )
    with op.batch_alter_table("formations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_formations_app_id"), ["app_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("formations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_formations_app_id"))
    op.drop_table("formations")
