"""A client generated from the committed openapi.json (openapi-python-client) is named after the
short operation ids and works against the real server, from signup to a read-back order."""

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from types import ModuleType

import pytest

from conftest import PASSWORD
from tests.system.conftest import Server

REPO = Path(__file__).resolve().parents[2]
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "orders_api_client"
CATALOGUE = {1: Decimal("12.50"), 2: Decimal("3.99")}  # the `server` fixture's products


def operations() -> list[tuple[str, str]]:
    """(first tag, operationId) of every operation in the committed document."""
    spec = json.loads((REPO / "openapi.json").read_text())
    return [
        (operation["tags"][0], operation["operationId"])
        for path_item in spec["paths"].values()
        for operation in path_item.values()
    ]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package generated from openapi.json, importable as PACKAGE while the module runs."""
    root = tmp_path_factory.mktemp("generated")
    command = [str(GENERATOR), "generate", "--path", str(REPO / "openapi.json")]
    command += ["--output-path", str(root / PACKAGE), "--meta", "none", "--fail-on-warning"]
    # The generator's post hooks run `ruff`, found on PATH: the venv's own.
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    try:
        yield root / PACKAGE
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture
def server(shared_server: Server) -> Server:
    """The tests of this module share one server (see shared_server)."""
    return shared_server


def generated_module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_generated_functions_carry_the_short_operation_ids(generated: Path) -> None:
    ids = [operation_id for _, operation_id in operations()]
    assert len(ids) == len(set(ids))
    for tag, operation_id in operations():
        assert operation_id.startswith(f"{tag}-"), operation_id
    expected = {f"{tag}/{operation_id.replace('-', '_')}.py" for tag, operation_id in operations()}
    assert {"order/order_create.py", "auth/auth_login.py", "product/product_list.py"} <= expected
    modules = {
        path.relative_to(generated / "api").as_posix()
        for path in (generated / "api").glob("*/*.py")
        if path.name != "__init__.py"
    }
    assert modules == expected
    assert callable(generated_module("api.order.order_create").sync_detailed)


def test_generated_client_signs_up_logs_in_and_orders(server: Server, generated: Path) -> None:
    package = importlib.import_module(PACKAGE)
    models = generated_module("models")
    auth_signup = generated_module("api.auth.auth_signup")
    auth_login = generated_module("api.auth.auth_login")
    order_create = generated_module("api.order.order_create")
    order_get = generated_module("api.order.order_get")

    with package.Client(base_url=server.base_url, raise_on_unexpected_status=True) as anonymous:
        body = models.UserCreate(name="Generated", email="generated@example.com", password=PASSWORD)
        signed_up = auth_signup.sync_detailed(client=anonymous, body=body)
        assert signed_up.status_code == HTTPStatus.CREATED, signed_up.content
        assert isinstance(signed_up.parsed, models.UserPublic)
        assert signed_up.parsed.email == "generated@example.com"

        wrong = models.LoginRequest(email="generated@example.com", password=PASSWORD + "!")
        refused = auth_login.sync_detailed(client=anonymous, body=wrong)
        assert refused.status_code == HTTPStatus.UNAUTHORIZED, refused.content
        assert isinstance(refused.parsed, models.Error)

        right = models.LoginRequest(email="generated@example.com", password=PASSWORD)
        logged_in = auth_login.sync_detailed(client=anonymous, body=right)
        assert logged_in.status_code == HTTPStatus.OK, logged_in.content
        assert isinstance(logged_in.parsed, models.TokenPair)
        token = logged_in.parsed.access_token

    quantities = {1: 2, 2: 3}
    expected_total = sum(CATALOGUE[pid] * quantity for pid, quantity in quantities.items())
    with package.AuthenticatedClient(
        base_url=server.base_url, token=token, raise_on_unexpected_status=True
    ) as user:
        items = [models.OrderItemIn(product_id=pid, quantity=q) for pid, q in quantities.items()]
        created = order_create.sync_detailed(client=user, body=models.OrderCreate(items=items))
        assert created.status_code == HTTPStatus.CREATED, created.content
        order = created.parsed
        assert isinstance(order, models.OrderPublic)
        assert order.user_id == signed_up.parsed.id
        assert order.status == models.OrderStatus.PENDING
        assert order.total == "36.97"
        assert Decimal(order.total) == expected_total
        lines = {item.product_id: item for item in order.items}
        assert sorted(lines) == [1, 2]
        for pid, line in lines.items():
            assert line.quantity == quantities[pid]
            assert Decimal(line.unit_price) == CATALOGUE[pid]
            assert Decimal(line.line_total) == CATALOGUE[pid] * quantities[pid]

        read = order_get.sync_detailed(order.id, client=user)
        assert read.status_code == HTTPStatus.OK, read.content
        assert isinstance(read.parsed, models.OrderPublic)
        assert read.parsed.id == order.id
        assert read.parsed.total == order.total
        assert [(i.product_id, i.quantity) for i in read.parsed.items] == [
            (i.product_id, i.quantity) for i in order.items
        ]

        missing = order_get.sync_detailed(order.id + 1000, client=user)
        assert missing.status_code == HTTPStatus.NOT_FOUND, missing.content
        assert isinstance(missing.parsed, models.Error)
        assert missing.parsed.detail
