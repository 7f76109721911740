from services.common.service import run
from services.langchain_api import create_app

if __name__ == "__main__":
    run("langchain_api", create_app)
