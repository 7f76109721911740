from services.common.service import run
from services.portal import create_app

if __name__ == "__main__":
    run("portal", create_app)
