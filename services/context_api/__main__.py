from services.common.service import run
from services.context_api import create_app

if __name__ == "__main__":
    run("context_api", create_app)
