from services.code_session_api import create_app
from services.common.service import run

if __name__ == "__main__":
    run("code_session_api", create_app)
