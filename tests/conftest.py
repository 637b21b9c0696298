"""Shared fixtures: trio mode comes from pyproject; helpers for both twins."""
import pytest

from mailaccess import _speedups


def twin_params(name: str):
    """pytest params for the available implementations of hot path NAME."""
    params = [pytest.param(_speedups.load_py(name), id="py")]
    mod = _speedups.load_c(name)
    if mod is not None:
        params.append(pytest.param(mod, id="c"))
    return params


import dataclasses

from mailaccess import config as _config


def make_config(tmp_path, **overrides) -> _config.Config:
    """Embedded defaults on ephemeral loopback ports in TMP_PATH, no demo user."""
    cfg = _config.Config(data_dir=str(tmp_path / "data"), demo_account=False)
    lo = _config.Listener("127.0.0.1", 0)
    cfg = dataclasses.replace(
        cfg,
        imap=dataclasses.replace(cfg.imap, listen=lo, listen_tls=lo, login_failure_delay=0.0),
        # no failed-login penalty (tests log in from one address, many times);
        # tests of the penalty turn it on
        auth=dataclasses.replace(cfg.auth, penalty_initial=0.0),
        http=dataclasses.replace(cfg.http, listen=lo),
        lmtp=dataclasses.replace(cfg.lmtp, listen=lo),
    )
    return dataclasses.replace(cfg, **overrides)


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
async def server(cfg, nursery):
    """The whole server in-process; yields the ServerContext (ctx.bound has ports)."""
    from mailaccess.server import app

    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))
    yield ctx
    nursery.cancel_scope.cancel()


def port_of(ctx, service: str) -> int:
    return ctx.bound[service][0][1]


@pytest.fixture
async def imap_server(server):
    """The server with user alice/pw (and bob/pw)."""
    import trio as _trio

    from mailaccess import accounts as _accounts
    await _trio.to_thread.run_sync(_accounts.add_user, server.store, "alice", "pw")
    await _trio.to_thread.run_sync(_accounts.add_user, server.store, "bob", "pw")
    return server
