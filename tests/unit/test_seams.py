"""The swappable parts (WireGuard backends, supervisors) offer exactly the
operations of their Protocol, with the Protocol's signatures: the rest of
the code can take any of them without asking which one it has."""

import dataclasses
import inspect

import pytest

from wgmesh_common import supervisor, wireguard
from wgmesh_common.config import defaults
from wgmesh_common.paths import Paths


def operations(cls) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_")}


def assert_conforms(implementation, protocol) -> None:
    wanted = operations(protocol)
    offered = operations(implementation)
    # Exactly the Protocol's operations: none missing, none that only one
    # implementation has (callers would have to ask which one they hold).
    assert set(offered) == set(wanted), implementation.__name__
    for name, signature in wanted.items():
        got = offered[name]
        # The Protocol's parameters, in order, with the same names and
        # annotations; an implementation may only add optional ones.
        params, got_params = list(signature.parameters.values()), list(got.parameters.values())
        assert [(p.name, p.annotation) for p in got_params[:len(params)]] == \
            [(p.name, p.annotation) for p in params], f"{implementation.__name__}.{name}"
        assert all(p.default is not inspect.Parameter.empty for p in got_params[len(params):]), \
            f"{implementation.__name__}.{name}"
        assert got.return_annotation == signature.return_annotation, f"{implementation.__name__}.{name}"


@pytest.mark.parametrize("backend", [wireguard.KernelBackend, wireguard.UserspaceBackend])
def test_each_backend_is_exactly_the_backend_protocol(backend):
    assert_conforms(backend, wireguard.Backend)


@pytest.mark.parametrize("kind", [supervisor.SystemdSupervisor, supervisor.DirectSupervisor])
def test_each_supervisor_is_exactly_the_supervisor_protocol(kind):
    assert_conforms(kind, supervisor.Supervisor)


def test_the_chosen_ones_satisfy_their_protocols(tmp_path):
    for setting in ("kernel", "userspace"):
        assert isinstance(wireguard.choose_backend(setting, tmp_path), wireguard.Backend)
    paths = Paths(tmp_path)
    for manager in ("systemd", "direct"):
        config = dataclasses.replace(defaults(), node_id=2, service_manager=manager)
        chosen = supervisor.choose(paths, config)
        assert isinstance(chosen, supervisor.Supervisor) and type(chosen).__name__.lower().startswith(manager)


def test_userspace_sockets_are_where_paths_says(tmp_path):
    from wgmesh_common import linkops

    config = dataclasses.replace(defaults(), node_id=2, backend="userspace")
    assert linkops.backend_of(Paths(tmp_path), config).socket_dir == tmp_path / "run/wireguard"
