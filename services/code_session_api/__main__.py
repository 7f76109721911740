from services.code_execution.config import zygote_enabled
from services.code_session_api import create_app
from services.common.service import run

if __name__ == "__main__":
    # Forked by the zygote, the interpreters cost the server one start; otherwise it starts each itself.
    run("code_session_api", create_app, starts_processes=not zygote_enabled())
