"""SQL Server sources: the `mssql` extra installs a driver SQLAlchemy finds. SQL Server itself
does not run on this machine, so only the driver's presence and its failure mode are checked."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from vigie.runtime.broker import free_port


def test_the_mssql_extra_gives_sqlalchemy_a_driver() -> None:
    import pymssql  # noqa: F401  (the Makefile installs '.[dev,mssql]')

    engine = sa.create_engine("mssql+pymssql://lecteur:secret@sis.css.example:1433/GPI")
    assert (engine.dialect.name, engine.dialect.driver) == ("mssql", "pymssql")


def test_an_unreachable_sql_server_fails_as_a_database_error() -> None:
    """The connector turns this into one line naming the source, as for any other database."""
    engine = sa.create_engine(f"mssql+pymssql://u:p@127.0.0.1:{free_port()}/db",
                              connect_args={"login_timeout": 5})  # fmt: skip
    with pytest.raises(OperationalError), engine.connect():
        pass
