from services.common.service import run
from services.gatekeeper_api import create_app

if __name__ == "__main__":
    run("gatekeeper_api", create_app)
