"""Rate-limit counters shared by every process: Redis when REDIS_URL is set, else a database table."""
