"""Schema-driven fuzz of the HTTP API: schemathesis against the app's own OpenAPI schema, in-process (ASGI).

Every operation in `/openapi.json` is exercised with schema-valid and schema-violating requests (query
parameters, JSON and multipart bodies, path parameters). No response may be a 5xx, and every response
must conform to the schema where schemathesis can check it: a documented status code, the documented
content type, and a body matching the documented response model.
"""

from __future__ import annotations

import pytest

from clipforge.data.shapes import ShapesWorld, write_csv_dataset

pytest.importorskip("faiss")
pytest.importorskip("fastapi")
pytest.importorskip("multipart")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from clipforge.index import BuildOptions, build_index  # noqa: E402
from clipforge.serve import Limits, create_app  # noqa: E402
from clipforge.serve.guard import LOOPBACK_HOSTS  # noqa: E402

ASGI_HOST = "testserver"  # the Host schemathesis's in-process ASGI transport sends
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.missing_required_header,
    checks.unsupported_method,
]
# Not enforced: positive_data_acceptance and negative_data_rejection. The schema does not carry the
# service's run-time limits (k <= Limits.max_k, thumbnail size <= max_thumbnail_px, non-blank text),
# and a form field is deliberately read as a list of one ("texts=a" is one text), so schema-valid
# requests can get a 422 and a form value the schema calls the wrong type can be accepted.


@pytest.fixture(scope="module")
def app(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("fuzz")
    csv = write_csv_dataset(ShapesWorld(seed=3, image_size=32), root / "data", n=12)
    build_index([str(csv)], root / "idx", model=model_dir, options=BuildOptions(captions=True, progress=False))
    limits = Limits(max_body_bytes=300_000, max_image_bytes=200_000, max_image_pixels=1_000_000, max_k=50)
    return create_app(root / "idx", limits, allowed_hosts=(*LOOPBACK_HOSTS, ASGI_HOST))


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_and_never_5xx(case):
    case.call_and_validate(checks=CHECKS)
