from services.common.service import run
from services.core_api import create_app

if __name__ == "__main__":
    run("core_api", create_app)
