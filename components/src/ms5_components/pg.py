"""What every PostgreSQL connection of the lifecycle code shares."""

from __future__ import annotations

CLIENT_ENCODING = "UTF8"
"""``client_encoding`` of every connection the program opens. Without it libpq takes the
database's encoding, and on a SQL_ASCII database psycopg then returns names and other text as
``bytes``; with it, text is always ``str`` (a SQL_ASCII server passes the bytes through
unconverted, and they are decoded as UTF-8)."""
