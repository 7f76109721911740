"""The data-analysis set in every session: numpy, pandas and matplotlib import inside the sandbox, figures
come back as image results (or as files when saved), the metadata lists the packages, and a warm
interpreter can pre-import them (FLLM_CODE_PREIMPORT)."""

from __future__ import annotations

import base64
import importlib.metadata
import uuid
from collections.abc import Iterator

import pytest

from tests.code_execution.conftest import API, AUTH, Harness, LoopThread, make_config, settings_for

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.title('t')\n"


def new_id() -> str:
    return f"d-{uuid.uuid4().hex[:12]}"


def result_of(emulator: Harness, code: str, identifier: str | None = None) -> object:
    body = emulator.execute(identifier or new_id(), code).json()
    assert body["status"] == "Succeeded", body
    return body["result"]["executionResult"]


def assert_png_image(result: object) -> bytes:
    assert isinstance(result, dict) and set(result) == {"type", "format", "base64_data"}, result
    assert result["type"] == "image" and result["format"] == "png"
    data = base64.b64decode(result["base64_data"], validate=True)
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    return data


def test_numpy_pandas_matplotlib_import_inside_the_sandbox(emulator: Harness) -> None:
    code = ("import numpy, pandas, matplotlib, matplotlib.pyplot\n"
            "frame = pandas.DataFrame({'x': numpy.arange(4)})\n"
            "[numpy.__version__, pandas.__version__, matplotlib.__version__, int(frame['x'].sum()),"
            " matplotlib.get_backend().lower()]")
    versions = [importlib.metadata.version(name) for name in ("numpy", "pandas", "matplotlib")]
    assert result_of(emulator, code) == [*versions, 6, "agg"]


def test_plt_show_comes_back_as_an_image_result(emulator: Harness) -> None:
    body = emulator.execute(new_id(), PLOT + "plt.show()").json()
    assert body["status"] == "Succeeded" and body["result"]["stderr"] == ""  # no "cannot be shown" warning
    assert_png_image(body["result"]["executionResult"])
    assert_png_image(body["rawResult"]["result"])


def test_a_figure_as_the_last_expression_is_an_image_result(emulator: Harness) -> None:
    code = ("from matplotlib.figure import Figure\nfigure = Figure()\n"
            "figure.add_subplot().bar(['a', 'b'], [3, 5])\nfigure")
    assert_png_image(result_of(emulator, code))


def test_the_displayed_figure_is_closed_and_the_next_cell_has_none(emulator: Harness) -> None:
    identifier = new_id()
    assert_png_image(result_of(emulator, PLOT + "plt.show()", identifier))
    assert result_of(emulator, "len(plt.get_fignums())", identifier) == 0


def test_the_legacy_contract_returns_the_image_in_properties_result(emulator: Harness) -> None:
    body = {"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": PLOT + "plt.show()"}}
    response = emulator.request("POST", f"/code/execute?api-version=2024-02-02-preview&identifier={new_id()}",
                                json=body, headers=AUTH)
    assert response.status_code == 200
    assert_png_image(response.json()["properties"]["result"])


def test_a_figure_saved_under_mnt_data_comes_back_as_a_file(emulator: Harness) -> None:
    identifier = new_id()
    code = PLOT + "plt.savefig('/mnt/data/chart.png')\nplt.close('all')\nprint('saved')"
    body = emulator.execute(identifier, code).json()
    assert body["status"] == "Succeeded" and body["result"]["stdout"] == "saved\n"
    assert body["result"]["executionResult"] == ""  # closed: nothing displayed
    listed = emulator.request("GET", f"/files?api-version={API}&identifier={identifier}", headers=AUTH).json()
    assert [(item["name"], item["type"]) for item in listed["value"]] == [("chart.png", "file")]
    content = emulator.request("GET", f"/files/chart.png/content?api-version={API}&identifier={identifier}",
                               headers=AUTH)
    assert content.status_code == 200 and content.content.startswith(PNG_SIGNATURE)


def test_a_failed_cell_closes_its_figures(emulator: Harness) -> None:
    identifier = new_id()
    failed = emulator.execute(identifier, PLOT + "1 / 0").json()
    assert failed["status"] == "Failed" and not isinstance(failed["result"]["executionResult"], dict)
    assert result_of(emulator, "len(plt.get_fignums())", identifier) == 0


def test_metadata_lists_the_data_analysis_packages(emulator: Harness) -> None:
    response = emulator.request("GET", f"/metadata?api-version={API}", headers=AUTH)
    assert response.status_code == 200
    packages = {item["name"].lower(): item["version"] for item in response.json()["preInstalledPackages"]}
    for name in ("numpy", "pandas", "matplotlib"):
        assert packages[name] == importlib.metadata.version(name)


@pytest.fixture(scope="module")
def preimporting(tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread) -> Iterator[Harness]:
    from services.dynamic_sessions import create_app

    tmp = tmp_path_factory.mktemp("preimport")
    config = make_config(tmp, pool_size=1, preimport=("numpy", "pandas", "matplotlib.pyplot", "no_such_module"))
    harness = Harness(create_app(settings_for(tmp), config), loop_thread).start()
    yield harness
    harness.stop()


def test_a_warm_interpreter_pre_imports_the_configured_modules(preimporting: Harness,
                                                               emulator: Harness) -> None:
    check = "import sys\n[name in sys.modules for name in ('numpy', 'pandas', 'matplotlib.pyplot')]"
    assert result_of(preimporting, check) == [True, True, True]  # a missing module is skipped, not fatal
    assert result_of(emulator, check) == [False, False, False]  # the default imports nothing ahead
    assert_png_image(result_of(preimporting, PLOT + "plt.show()"))


def test_a_figure_too_large_to_inline_is_a_note_not_an_image(emulator: Harness) -> None:
    # Colour noise, one pixel per value: ~5 MB of PNG (the limit is 4 MiB), encoded in about a second.
    code = ("import matplotlib.pyplot as plt, numpy\nplt.figure(figsize=(16, 16))\n"
            "plt.imshow(numpy.random.default_rng(1).random((1500, 1500, 3)), interpolation='nearest')\nplt.show()")
    body = emulator.execute(new_id(), code, timeoutInSeconds=120).json()
    assert body["status"] == "Succeeded", body
    result = body["result"]["executionResult"]
    assert isinstance(result, str) and "too large to return as an image result" in result
