"""HTTP API (FastAPI TestClient): every endpoint, the docs and page, and a battery of malformed requests."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import clipforge
from clipforge.data.shapes import ShapesWorld, write_csv_dataset

pytest.importorskip("faiss")
pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from clipforge.index import BuildOptions, SearchIndex, build_index  # noqa: E402
from clipforge.serve import Limits, create_app  # noqa: E402
from clipforge.serve.models import (  # noqa: E402
    ClassifyRequest,
    ClassifyResponse,
    EmbedRequest,
    EmbedResponse,
    HealthResponse,
    SearchRequest,
    SearchResponse,
)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    clipforge.save(clipforge.create_model("tiny"), root / "model", clipforge.get_tokenizer("tiny"))
    csv = write_csv_dataset(ShapesWorld(seed=1, image_size=32), root / "data", n=30)
    build_index([str(csv)], root / "idx", model=root / "model", options=BuildOptions(captions=True, progress=False))
    return root / "idx"


@pytest.fixture(scope="module")
def index(index_dir):
    return SearchIndex.open(index_dir)


@pytest.fixture(scope="module")
def client(index):
    limits = Limits(
        max_body_bytes=300_000,
        max_image_bytes=200_000,
        max_image_pixels=1_000_000,
        max_k=50,
        max_texts=4,
        max_labels=10,
    )
    with TestClient(create_app(index, limits), base_url="http://127.0.0.1:8000") as c:
        yield c


def png(size=(32, 32), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_health_docs_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["items"] == 30 and health["index"]["kind"] == "flat"
    assert health["limits"]["max_k"] == 50 and "model" in health
    spec = client.get("/openapi.json").json()
    assert {"/search", "/classify", "/embed", "/image/{item_id}", "/health"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/classify"]["post"]["requestBody"]["content"]
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and 'id="query"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_text_search_get_and_post(client, index):
    got = client.get("/search", params={"text": "a red circle", "k": 5}).json()
    expected = [h.id for h in index.search_text("a red circle", k=5)]
    assert [r["id"] for r in got["results"]] == expected
    first = got["results"][0]
    assert set(first) == {"id", "score", "name", "caption", "image_url"}
    assert first["image_url"] == f"/image/{first['id']}"
    assert "/" not in first["name"]  # no server paths leak: a file name, never a path
    posted = client.post("/search", json={"text": "a red circle", "k": 5}).json()
    assert [r["id"] for r in posted["results"]] == expected
    form = client.post("/search", data={"text": "a red circle", "k": "3", "target": "caption"}).json()
    assert len(form["results"]) == 3 and form["query"]["target"] == "caption"
    long = client.get("/search", params={"text": "a red circle " * 70, "k": 1})  # 910 chars: truncated to context
    assert long.status_code == 200 and len(long.json()["results"]) == 1


def test_image_search_multipart_and_base64(client, index):
    data = index.image_bytes(4)
    multi = client.post("/search", files={"image": ("q.png", data, "image/png")}, data={"k": "2"}).json()
    assert multi["results"][0]["id"] == 4 and multi["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    b64 = client.post("/search", json={"image": base64.b64encode(data).decode(), "k": 2}).json()
    assert b64["results"][0]["id"] == 4
    combined = client.post("/search", files={"image": ("q.png", data, "image/png")}, data={"text": "a shape"})
    assert combined.status_code == 200 and combined.json()["query"]["text"] == "a shape"


def test_classify_and_embed(client, index):
    data = index.image_bytes(0)
    files = {"image": ("q.png", data, "image/png")}
    res = client.post("/classify", files=files, data={"labels": "circle, square,star"})
    body = res.json()
    assert res.status_code == 200 and body["labels"] == 3
    assert sorted(p["label"] for p in body["predictions"]) == ["circle", "square", "star"]
    assert sum(p["probability"] for p in body["predictions"]) == pytest.approx(1.0, abs=1e-4)
    repeated = client.post(
        "/classify",
        files={"image": ("q.png", data, "image/png")},
        data={"labels": ["red", "blue"], "templates": "simple", "top_k": "1"},
    ).json()
    assert len(repeated["predictions"]) == 1 and repeated["templates"] == "simple"
    as_json = client.post("/classify", json={"image": base64.b64encode(data).decode(), "labels": ["a", "b"]})
    assert as_json.status_code == 200

    emb = client.post("/embed", json={"texts": ["a red circle", "a blue square"]}).json()
    vecs = np.array(emb["text_embeddings"])
    assert vecs.shape == (2, 32) and emb["image_embedding"] is None
    np.testing.assert_allclose(vecs, index.embed_texts(["a red circle", "a blue square"]), atol=1e-5)
    both = client.post("/embed", files={"image": ("q.png", data, "image/png")}, data={"texts": ["x", "y"]}).json()
    assert len(both["text_embeddings"]) == 2
    np.testing.assert_allclose(both["image_embedding"], index.vector(0), atol=1e-5)


def test_browse_pages_through_the_index_in_order(client, index):
    first = client.get("/items", params={"limit": 12}).json()
    rest = client.get("/items", params={"offset": 12, "limit": 50}).json()
    assert first["total"] == rest["total"] == 30 and len(first["items"]) == 12 and len(rest["items"]) == 18
    ids = [item["id"] for item in first["items"] + rest["items"]]
    assert ids == [hit.id for hit in index.browse(0, 30)] and len(set(ids)) == 30
    assert all(item["image_url"] == f"/image/{item['id']}" and "/" not in item["name"] for item in first["items"])
    assert client.get("/items", params={"offset": 10**6}).json()["items"] == []
    for params in ({"limit": 51}, {"limit": 0}, {"offset": -1}, {"limit": "x"}):
        response = client.get("/items", params=params)
        assert response.status_code == 422, (params, response.text)


def test_thumbnails_serve_only_indexed_items(client, index):
    res = client.get("/image/3", params={"size": 16})
    assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(res.content)).size == (16, 16)
    assert client.get("/image/3").status_code == 200
    for bad in ("/image/30", "/image/-1", "/image/99999999999"):
        assert client.get(bad).status_code == 404, bad
    for bad in (
        "/image/..%2F..%2Fetc%2Fpasswd",
        "/image/%2Fetc%2Fpasswd",
        "/image/../../etc/passwd",
        "/static/../app.py",
        "/static/..%2F..%2Fimages.py",
        "/image/3?size=5000",
    ):
        res = client.get(bad)
        assert 400 <= res.status_code < 500 and b"root:" not in res.content, bad


def test_malformed_requests_get_clear_4xx(client, index):
    """Every malformed request gets a 4xx with a message; never a 500, never a file opened for a client."""
    image = ("q.png", index.image_bytes(1), "image/png")
    big_pixels = io.BytesIO()
    Image.new("L", (2000, 2000)).save(big_pixels, format="PNG")  # 4 MP, tiny file: over max_image_pixels
    cases = [
        ("bad JSON", "post", "/search", dict(content=b"{not json", headers={"content-type": "application/json"})),
        ("JSON not an object", "post", "/search", dict(json=["a red car"])),
        ("no query", "post", "/search", dict(json={"k": 3})),
        ("empty text", "post", "/search", dict(json={"text": "   "})),
        ("text not a string", "post", "/search", dict(json={"text": 5})),
        ("text too long", "post", "/search", dict(json={"text": "x" * 5000})),
        ("k zero", "post", "/search", dict(json={"text": "a", "k": 0})),
        ("k too big", "post", "/search", dict(json={"text": "a", "k": 51})),
        ("k not a number", "post", "/search", dict(data={"text": "a", "k": "ten"})),
        ("k a float", "post", "/search", dict(json={"text": "a", "k": 2.5})),
        ("k a bool", "post", "/search", dict(json={"text": "a", "k": True})),
        ("k twice", "post", "/search", dict(data={"text": "a", "k": ["1", "2"]})),
        ("unknown target", "post", "/search", dict(json={"text": "a", "target": "audio"})),
        ("GET k out of range", "get", "/search", dict(params={"text": "a", "k": 500})),
        ("GET no text", "get", "/search", dict(params={"k": 3})),
        ("GET empty text", "get", "/search", dict(params={"text": ""})),
        ("not an image", "post", "/search", dict(files={"image": ("x.png", b"GIF89a nonsense", "image/png")})),
        ("empty upload", "post", "/search", dict(files={"image": ("x.png", b"", "image/png")})),
        ("a path instead of an image", "post", "/search", dict(json={"image": "/etc/passwd"})),
        ("base64 of a non-image", "post", "/search", dict(json={"image": base64.b64encode(b"hello").decode()})),
        ("image not a string", "post", "/search", dict(json={"image": {"path": "/etc/passwd"}})),
        ("too many pixels", "post", "/search", dict(files={"image": ("b.png", big_pixels.getvalue(), "image/png")})),
        ("upload too large", "post", "/search", dict(files={"image": ("x.png", b"\0" * 400_000, "image/png")})),
        ("image too large", "post", "/search", dict(files={"image": ("x.png", b"\0" * 250_000, "image/png")})),
        ("wrong file field", "post", "/search", dict(files={"photo": image})),
        ("two images", "post", "/search", dict(files=[("image", image), ("image", image)])),
        ("wrong content type", "post", "/search", dict(content=b"text=a", headers={"content-type": "text/plain"})),
        ("no content type", "post", "/search", dict(content=b"text=a")),
        (
            "broken multipart",
            "post",
            "/search",
            dict(
                content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\n",
                headers={"content-type": "multipart/form-data; boundary=xyz"},
            ),
        ),
        (
            "lying content-length",
            "post",
            "/search",
            dict(content=b"{}", headers={"content-type": "application/json", "content-length": "99999999"}),
        ),
        ("classify without labels", "post", "/classify", dict(files={"image": image})),
        ("classify empty labels", "post", "/classify", dict(files={"image": image}, data={"labels": " , ,"})),
        ("classify duplicate labels", "post", "/classify", dict(files={"image": image}, data={"labels": "a,b,a"})),
        (
            "classify too many labels",
            "post",
            "/classify",
            dict(files={"image": image}, data={"labels": ",".join(f"c{i}" for i in range(11))}),
        ),
        ("classify without image", "post", "/classify", dict(data={"labels": "a,b"})),
        ("classify labels not strings", "post", "/classify", dict(json={"labels": [1, 2]})),
        (
            "classify template file path",
            "post",
            "/classify",
            dict(files={"image": image}, data={"labels": "a,b", "templates": "/etc/passwd"}),
        ),
        ("classify templates a list", "post", "/classify", dict(json={"labels": "a", "templates": ["{}"]})),
        ("target a list", "post", "/search", dict(json={"text": "a", "target": ["image"]})),
        ("k a list", "post", "/search", dict(json={"text": "a", "k": [3]})),
        ("labels an object", "post", "/classify", dict(json={"labels": {"a": 1}})),
        ("classify top_k 0", "post", "/classify", dict(files={"image": image}, data={"labels": "a", "top_k": "0"})),
        (
            "classify not an image",
            "post",
            "/classify",
            dict(files={"image": ("x", b"abc", "image/png")}, data={"labels": "a"}),
        ),
        ("embed nothing", "post", "/embed", dict(json={})),
        ("embed texts not a list", "post", "/embed", dict(json={"texts": "a red car"})),
        ("embed empty text", "post", "/embed", dict(json={"texts": ["ok", ""]})),
        ("embed batch too large", "post", "/embed", dict(json={"texts": ["a"] * 5})),
        ("embed non-string text", "post", "/embed", dict(json={"texts": [None]})),
        ("thumbnail id not a number", "get", "/image/abc", {}),
        ("thumbnail unknown id", "get", "/image/12345", {}),
        ("thumbnail huge id", "get", "/image/100000000000000000000000000", {}),
        ("thumbnail float id", "get", "/image/1.5", {}),
        ("undecodable query text", "get", "/search?text=%ff%fe&k=abc", {}),
        ("thumbnail size too small", "get", "/image/1", dict(params={"size": 1})),
        ("unknown endpoint", "get", "/nope", {}),
        ("wrong method", "get", "/classify", {}),
        ("wrong method", "delete", "/search", {}),
    ]
    for name, method, url, kwargs in cases:
        res = getattr(client, method)(url, **kwargs)
        assert 400 <= res.status_code < 500, (name, res.status_code, res.text[:300])
        detail = res.json().get("detail")
        assert detail and (isinstance(detail, str) or name in ("unknown endpoint", "wrong method")), (name, detail)
        assert "root:" not in res.text
    assert client.get("/health").status_code == 200  # still healthy afterwards


def test_sliver_upload_is_refused_before_it_costs_memory(client):
    """A 664-byte 200000 x 1 PNG took the server from 0.5 to 4.4 GB (resized to 12.8M x 64): now a 413."""
    sliver = png((200_000, 1))
    assert len(sliver) < 1000
    for path, data in (("/search", {}), ("/classify", {"labels": "a,b"}), ("/embed", {})):
        res = client.post(path, files={"image": ("s.png", sliver, "image/png")}, data=data)
        assert res.status_code == 413, (path, res.text[:200])
        assert "aspect ratio" in res.json()["detail"] and "200000x1" in res.json()["detail"]
    assert client.get("/health").json()["limits"]["max_image_aspect_ratio"] == 100


def test_specific_status_codes(client, index):
    image = ("q.png", index.image_bytes(1), "image/png")
    assert client.post("/search", files={"image": ("x.png", b"\0" * 400_000, "image/png")}).status_code == 413
    assert client.post("/search", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/search", json={"text": "a", "k": 0}).status_code == 422
    res = client.post("/classify", files={"image": image}, data={"labels": ""})
    assert res.status_code == 422 and "labels" in res.json()["detail"]
    res = client.post("/search", files={"image": ("x.png", b"GIF89a", "image/png")})
    assert res.status_code == 400 and "not a readable image" in res.json()["detail"]
    # a label that names a file is just a label: it is never read
    res = client.post("/classify", files={"image": image}, data={"labels": "/etc/passwd"})
    assert res.status_code == 200 and res.json()["predictions"][0]["label"] == "/etc/passwd"


@pytest.mark.parametrize(
    "path, request_model, response_model, fields",
    [
        ("/search", SearchRequest, SearchResponse, {"text", "image", "k", "target"}),
        ("/classify", ClassifyRequest, ClassifyResponse, {"image", "labels", "templates", "top_k"}),
        ("/embed", EmbedRequest, EmbedResponse, {"texts", "image"}),
    ],
)
def test_openapi_bodies_come_from_the_models(client, path, request_model, response_model, fields):
    spec = client.get("/openapi.json").json()
    post = spec["paths"][path]["post"]
    content = post["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    for media_type, body in content.items():
        schema = body["schema"]
        assert set(schema["properties"]) == set(request_model.model_fields) == fields, media_type
        assert set(schema.get("required", [])) == {n for n, f in request_model.model_fields.items() if f.is_required()}
    assert content["application/json"]["schema"]["properties"]["image"]["contentEncoding"] == "base64"
    assert content["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    ref = post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[-1]
    assert name == response_model.__name__
    assert set(spec["components"]["schemas"][name]["properties"]) == set(response_model.model_fields)
    assert post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    health = spec["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert health["$ref"].endswith("/" + HealthResponse.__name__)


# Arbitrary JSON, plus values close enough to valid ones that the fuzz also reaches the model.
_any_text = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates included
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_B64 = base64.b64encode(png((8, 8))).decode()
_image = st.sampled_from([_B64, "data:image/png;base64," + _B64, "", "//8=", "/etc/passwd"])
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "text": st.text(st.characters(categories=["L", "Zs"]), min_size=1, max_size=30) | st.text(max_size=30) | _json,
        "image": _image | _json,
        "k": st.integers(1, 50) | st.integers(-2, 60) | st.sampled_from(["3", "", "x"]) | _json,
        "target": st.sampled_from(["image", "caption", ""]) | _json,
        "labels": st.lists(st.text(max_size=8), min_size=1, max_size=4) | st.text(max_size=20) | _json,
        "templates": st.sampled_from(["simple", "openai", ""]) | _json,
        "top_k": st.integers(-1, 12) | _json,
    },
) | _json


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies)
def test_fuzzed_json_bodies_never_get_a_5xx(client, body):
    raw = json.dumps(body).encode()  # the stdlib encoder: NaN, infinities and lone surrogates reach the server
    for path in ("/search", "/classify"):
        res = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert res.status_code < 500, (path, body, res.text[:300])
        if res.status_code >= 400:
            assert isinstance(res.json()["detail"], str), (path, body, res.text[:300])


def test_json_that_parses_in_python_but_is_not_servable_is_a_400(client):
    """Lone surrogates (cannot be encoded, so never echoed), absurd nesting and 5000-digit integers."""
    bodies = (
        b'{"text": "\\ud800 a red circle"}',
        b'{"text": "a", "extra": {"\\udfff": 1}}',
        b'{"texts": ["\\udc80"], "labels": ["\\ud800"]}',
        b'{"text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"texts": ' + b"[" * 1001 + b"]" * 1001 + b"}",
        b'{"a": ' * 3000 + b"1" + b"}" * 3000,
        b'{"text": "a", "k": ' + b"9" * 5000 + b"}",
        b'{"labels": "a", "top_k": -' + b"1" * 4301 + b"}",
    )
    for path in ("/search", "/classify", "/embed"):
        for raw in bodies:
            res = client.post(path, content=raw, headers={"content-type": "application/json"})
            assert res.status_code == 400 and "malformed JSON" in res.json()["detail"], (path, raw[:40], res.text[:200])


def test_json_and_form_field_conventions(client, index):
    """null and (for k/target/templates/top_k) "" mean "use the default"; one form field is a list of one."""
    image = ("q.png", index.image_bytes(2), "image/png")
    res = client.post("/search", json={"text": "a red circle", "k": None, "target": ""}).json()
    assert res["query"] == {"text": "a red circle", "image": False, "k": 10, "target": "image"}
    res = client.post("/classify", files={"image": image}, data={"labels": "a,b", "templates": "", "top_k": ""}).json()
    assert res["templates"] == "openai7" and len(res["predictions"]) == 2
    assert len(client.post("/embed", data={"texts": "one text"}).json()["text_embeddings"]) == 1
    res = client.post("/search", data={"text": "a", "image": "aGVsbG8="})  # an image must be a file part in a form
    assert res.status_code == 400 and "image" in res.json()["detail"]
    res = client.post("/search", json={"text": "  ", "k": "x"})  # every invalid field is named at once
    assert res.status_code == 422 and res.json()["detail"].startswith("text: ") and "; k: " in res.json()["detail"]


def test_host_header_must_name_this_server(client, index):
    """No Host validation let a page on another site reach the loopback service through DNS rebinding."""
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:9", "[::1]:8000", "127.0.0.1"):
        assert client.get("/health", headers={"host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "", "[::2]"):
        res = client.get("/health", headers={"host": host})
        assert res.status_code == 400 and "Host header" in res.json()["detail"], host
    with TestClient(create_app(index, allowed_hosts=["search.example"]), base_url="http://search.example") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"host": "127.0.0.1"}).status_code == 400


def test_cross_site_posts_are_refused(client):
    """A cross-origin form POST (no preflight needed) was processed."""
    form = {"data": {"texts": "a red circle"}}
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                    {"origin": "http://127.0.0.1:9999"}):
        res = client.post("/embed", headers=headers, **form)
        assert res.status_code == 403 and "refused" in res.json()["detail"], headers
    assert client.post("/embed", headers={"origin": "http://127.0.0.1:8000"}, **form).status_code == 200
    assert client.post("/embed", headers={"sec-fetch-site": "same-origin"}, **form).status_code == 200
    assert client.post("/embed", **form).status_code == 200  # not a browser: no Origin, no Sec-Fetch-Site


def test_security_headers_and_no_server_paths_in_health(client, index):
    for path in ("/", "/health", "/static/app.js", "/search?text=a", "/nope"):
        res = client.get(path)
        assert res.headers["x-content-type-options"] == "nosniff" and res.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in res.headers["content-security-policy"], path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers  # Swagger UI loads a CDN
    assert docs.headers["x-content-type-options"] == "nosniff"
    health = client.get("/health").json()
    assert index.describe()["model"].startswith("/")  # the index records where its model is ...
    assert health["model"] == "model" and "/" not in json.dumps(health["model"])  # ... a client sees a name
