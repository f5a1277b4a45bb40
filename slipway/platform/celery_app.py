"""The Celery application: the broker and result backend are Redis."""

from __future__ import annotations

from celery import Celery

from slipway.config import get_settings


def make_celery() -> Celery:
    settings = get_settings()
    celery = Celery("slipway", broker=settings.redis_url, backend=settings.redis_url,
                    include=["slipway.platform.tasks"])
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "reconcile": {"task": "slipway.reconcile", "schedule": settings.reconcile_interval},
            # Issues missing certificates, renews those near expiry, retries failures.
            "certificates": {"task": "slipway.ensure_certificates",
                             "schedule": settings.certificate_check_interval},
            "capsule-backups": {"task": "slipway.backup_capsules",
                                "schedule": settings.capsule_backup_interval},
        },
    )
    return celery


celery = make_celery()
