"""IAM costs against the test OpenID provider process: validating a JWT (cached JWKS), a cached access token, and a
refresh round trip. Prints `figure <name> = <number>` lines."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("DODAS_HOME", tempfile.mkdtemp(prefix="dodas-bench-iam-"))

from oidc_provider.fixture import running_provider  # noqa: E402

from dodas_tasks.iam import IamClient, IamConfig, TokenSource, delegate  # noqa: E402
from dodas_tasks.store import Store  # noqa: E402
from dodas_tasks.tosca.plan import Plan  # noqa: E402


def per_call_ms(call: object, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        call()  # type: ignore[operator]
    return (time.perf_counter() - start) * 1000 / repeat


def main() -> None:
    with running_provider(30) as provider, Store() as store:
        iam = IamClient(IamConfig(provider.issuer, provider.client_id, provider.client_secret, audience="dodas"))
        token = provider.login("bench", aud="dodas")
        iam.validate(token)
        print(f"figure iam_validate_jwt_ms = {per_call_ms(lambda: iam.validate(token), 300):.3f}")
        deployment_id = store.create_deployment(
            template="x", plan=Plan(), owner_subject="bench", owner_issuer=provider.issuer,
            ssh_private_key="k", ssh_public_key="p",
        )  # fmt: skip
        delegate(store, deployment_id, token, iam)
        source = TokenSource(store, deployment_id, iam)
        source.access_token()
        print(f"figure iam_cached_access_token_ms = {per_call_ms(source.access_token, 2000):.4f}")
        print(f"figure iam_refresh_roundtrip_ms = {per_call_ms(source.refresh_now, 20):.2f}")


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
