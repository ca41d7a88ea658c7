"""`mudbase-exporter --demo`: the simulator and the exporter in one process, no account needed."""

import ipaddress

from pydantic import SecretStr

from exporter.app import Exporter, install_signal_handlers
from exporter.config import Config, LoadedConfig, TokenCredentials
from exporter.logs import get_logger
from exporter.simulator.cli import serve as serve_simulator
from exporter.simulator.scenarios import DEMO_FUNCTIONS, DEMO_TOKEN, demo_simulator
from exporter.web import Limits
from exporter.webconfig import WebConfig

log = get_logger("exporter.demo")
DEMO_INTERVAL = "5s"


def demo_config(simulator_url: str) -> LoadedConfig:
    projects: dict[str, list[str]] = {}
    for spec in DEMO_FUNCTIONS:
        projects.setdefault(spec["project"], []).append(spec["id"])
    config = Config.model_validate(
        {
            "mudbase": {"url": simulator_url, "timeout": "2s"},
            "interval": DEMO_INTERVAL,
            "targets": [{"project": p, "functions": f} for p, f in projects.items()],
        }
    )
    credentials = TokenCredentials(SecretStr(DEMO_TOKEN), "config")
    return LoadedConfig(config, credentials, "(built-in demo)")


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def _exposure_note(host: str, port: int) -> str:
    """How to open the demo up when it listens on loopback only; a warning when it does not."""
    if _loopback(host):
        return (
            "Listening on this machine only. To reach it from elsewhere (or from outside a\n"
            f"container), add --web.listen-address=:{port} (every interface, no authentication).\n"
        )
    return "Listening beyond this machine with no authentication: whoever reaches it can read it.\n"


async def run_demo(
    listen: tuple[str, int], web: WebConfig | None = None, *, limits: Limits | None = None
) -> int:
    runner, sim_port = await serve_simulator(demo_simulator(), "127.0.0.1", 0)
    simulator_url = f"http://127.0.0.1:{sim_port}"
    try:
        exporter = Exporter(demo_config(simulator_url), listen, web=web, limits=limits)
    except OSError as err:
        log.error(  # noqa: TRY400 - the reason is the whole story
            "cannot listen", address=f"{listen[0]}:{listen[1]}", error=err.strerror
        )
        await runner.cleanup()
        return 1
    install_signal_handlers(exporter)
    host = "localhost" if listen[0] in ("0.0.0.0", "::", "") else listen[0]  # noqa: S104
    base = f"http://{host}:{exporter.port}"
    print(
        f"\nmudbase-exporter demo: a simulated Mudbase with {len(DEMO_FUNCTIONS)} functions, "
        f"polled every {DEMO_INTERVAL}\n"
        f"  status page:   {base}/\n"
        f"  metrics:       {base}/metrics\n"
        f"  simulator:     {simulator_url}/_sim/state\n"
        f"{_exposure_note(listen[0], exporter.port)}"
        "Stop with Ctrl-C.\n",
        flush=True,
    )
    try:
        await exporter.run()
    finally:
        await runner.cleanup()
    return 0
