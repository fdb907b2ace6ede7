"""Persistence: the store interfaces (`base`), the SQLite store (`sqlite`) and
the schema shared with the tracker's direct mode (`schema`); `base` and
`schema` import no driver."""
