from django.db import models


class Counter(models.Model):
    """One rate-limit window of one (scope, client): the embedded store (throttling.stores.DatabaseStore).

    Rows are written only by raw upserts in that module (one atomic statement per hit) and deleted
    once expired; nothing culls them, so no amount of traffic can evict another client's count.
    """

    # HMAC-SHA256 (SECRET_KEY) of (scope, identity, window): fixed size whatever the client sent.
    digest = models.CharField(max_length=64, primary_key=True)
    hits = models.PositiveIntegerField()
    # Unix seconds at which the window ends; pruning deletes rows past it.
    expires_at = models.BigIntegerField(db_index=True)

    class Meta:
        db_table = "throttling_counter"

    def __str__(self) -> str:
        return f"{self.digest[:12]}…: {self.hits}"
