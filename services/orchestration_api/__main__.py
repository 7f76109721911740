from services.common.service import run
from services.orchestration_api import create_app

if __name__ == "__main__":
    run("orchestration_api", create_app)
