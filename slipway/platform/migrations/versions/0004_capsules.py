"""capsules: managed PostgreSQL and Redis

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "capsules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=30), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("image", sa.String(length=255), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("provisioning", "available", "failed", name="capsulestatus",
                    native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("password_encrypted", sa.Text(), nullable=False),
        sa.Column("host_port", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("capsules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_capsules_owner_id"), ["owner_id"], unique=False)
    op.create_table(
        "capsule_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("capsule_id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["capsule_id"], ["capsules.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "alias"),
        sa.UniqueConstraint("app_id", "capsule_id"),
    )
    with op.batch_alter_table("capsule_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_capsule_attachments_app_id"), ["app_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_capsule_attachments_capsule_id"), ["capsule_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("capsule_attachments")
    op.drop_table("capsules")
