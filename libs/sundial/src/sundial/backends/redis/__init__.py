"""The Redis backend: every piece of shared state in one Redis database (see ``backend``)."""

from sundial.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
