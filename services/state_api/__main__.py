from services.common.service import run
from services.state_api import create_app

if __name__ == "__main__":
    run("state_api", create_app)
