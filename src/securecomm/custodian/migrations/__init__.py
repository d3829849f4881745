"""A custodian's schema, revision by revision (Alembic). A revision, once released, is
never edited: a change to ``custodian/tables.py`` comes with a new one, and
``tests/unit/test_migrations.py`` checks that the revisions make exactly those tables."""
