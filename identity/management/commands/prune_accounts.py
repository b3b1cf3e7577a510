"""Retention of account data: run it daily (cron, a scheduler, or the stack's pruning)."""
import logging

from django.conf import settings
from django.core.management.base import BaseCommand

from allergies.services import allergy_history_prune
from identity.services import account_data_prune

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Delete account data past its retention: allergy revisions older than ALLERGY_HISTORY_RETENTION_DAYS, "
        "expired email-change requests, unsent mail notices older than MAIL_NOTICE_TTL_HOURS, and tokens "
        "ended more than NEW_DEVICE_MEMORY_DAYS ago."
    )

    def handle(self, *args, **options) -> None:
        result = account_data_prune()
        revisions = allergy_history_prune()
        line = (
            f"pruned {revisions} allergy revisions (older than {settings.ALLERGY_HISTORY_RETENTION_DAYS} days), "
            f"{result.email_change_requests} email-change requests, {result.mail_notices} mail notices, "
            f"{result.tokens} ended tokens"
        )
        logger.info(line)
        self.stdout.write(line)
