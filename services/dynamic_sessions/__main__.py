from services.common.service import run
from services.dynamic_sessions import create_app

if __name__ == "__main__":
    run("dynamic_sessions", create_app)
