"""Which files of an answer the page shows, and how: read from every shape a Message can carry them in."""

from __future__ import annotations

import base64

from services.portal.files import files_of
from tests.portal.conftest import png

URL = "{{fllm_base_url}}/instances/8ac6074c-bdde-43cb-a140-ec0002d96d2b/files/FoundationaLLM.Context/"
CHART, TABLE = "file-20261130-215500-Qk3xZ_a-9w", "file-20261130-215501-u8Tq0Lr_Zw"
ARTIFACTS = [
    {"id": "code_interpreter", "type": "File", "filepath": CHART,
     "metadata": {"original_file_name": "chart.png", "content_type": "image/png"}},
    {"id": "code_interpreter", "type": "File", "filepath": TABLE,
     "metadata": {"original_file_name": "table.csv", "content_type": "text/csv"}},
    {"id": "workflow", "type": "WorkflowExecution", "filepath": None},
]


def shown(message: dict) -> list[tuple[str, str, str]]:
    return [(ref["kind"], ref["name"], ref["url"]) for ref in files_of(message)]


def test_cores_message_as_the_original_builds_it() -> None:
    """Core flattens annotations into ``file_path`` items (with ``fileName``); ``image_file`` items carry only
    the URL, so the File artifact names the picture."""
    message = {
        "content": [
            {"type": "file_path", "fileName": "table.csv", "value": URL + TABLE},
            {"type": "text", "fileName": None, "value": "Here is the chart."},
            {"type": "image_file", "fileName": None, "value": URL + CHART},
            # an annotation Core typed by its extension: an html page is a download, never rendered
            {"type": "html", "fileName": "report.html", "value": URL.replace("{{fllm_base_url}}",
                                                                              "http://127.0.0.1:63280") + "file-h"},
        ],
        "contentArtifacts": ARTIFACTS,
    }
    assert shown(message) == [
        ("file", "table.csv", f"api/files/{TABLE}?name=table.csv"),
        ("image", "chart.png", f"api/files/{CHART}?name=chart.png"),
        ("file", "report.html", "api/files/file-h?name=report.html"),
    ]


def test_the_langchain_answers_items_and_annotations() -> None:
    """The function-calling workflow's shapes: ``image_file`` items and ``file_path`` annotations of the text."""
    message = {
        "content": [
            {"type": "text", "value": "Done.", "agent_capability_category": "FoundationaLLM.KnowledgeManagement",
             "annotations": [{"type": "file_path", "text": "table.csv", "file_id": TABLE, "file_url": URL + TABLE,
                              "start_index": None, "end_index": None}]},
            {"type": "image_file", "text": "chart.png", "file_id": CHART, "file_url": URL + CHART},
        ],
        "content_artifacts": ARTIFACTS,
    }
    assert shown(message) == [
        ("file", "table.csv", f"api/files/{TABLE}?name=table.csv"),
        ("image", "chart.png", f"api/files/{CHART}?name=chart.png"),
    ]


def test_image_results_inline_and_artifacts_alone() -> None:
    data = base64.b64encode(png()).decode()
    message = {"content": [{"type": "text", "value": "x"}, {"type": "image", "format": "png", "base64_data": data}],
               "contentArtifacts": ARTIFACTS}
    assert shown(message) == [
        ("image", "image result", f"data:image/png;base64,{data}"),
        ("image", "chart.png", f"api/files/{CHART}?name=chart.png"),
        ("file", "table.csv", f"api/files/{TABLE}?name=table.csv"),
    ]


def test_what_cannot_be_shown_is_left_out_or_linked() -> None:
    message = {
        "content": [
            {"type": "image", "format": "svg", "base64_data": "PHN2Zz4="},  # never an inline svg
            {"type": "image", "format": "png", "base64_data": "not base64!"},
            {"type": "image_file", "value": URL + "../../etc/passwd"},  # not a file id
            {"type": "image_file", "fileName": "drawing.svg", "value": URL + "file-svg"},  # a download, not an <img>
            {"type": "image_file", "text": "scan.TIFF", "file_id": "file-tiff"},  # not shown by browsers either
            {"type": "file_path", "fileName": "a.csv"},  # no file at all
            "not an item",
        ],
        "contentArtifacts": [{"type": "File", "filepath": "../x"}, "junk"],
    }
    assert shown(message) == [("file", "drawing.svg", "api/files/file-svg?name=drawing.svg"),
                              ("file", "scan.TIFF", "api/files/file-tiff?name=scan.TIFF")]
    assert files_of({"content": None, "contentArtifacts": None}) == []
