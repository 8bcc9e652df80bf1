"""SigLIP checkpoints (Hugging Face `SiglipModel` layout) load exactly, run every text and image path,
and export back; their SentencePiece tokenizer comes from the checkpoint's own files."""

from __future__ import annotations

import io
import json

import pytest
import torch

import clipforge
from clipforge.checkpoints import read_checkpoint
from clipforge.checkpoints.export import export
from clipforge.dense import encode_dense
from clipforge.tokenizer import HFTokenizer, MissingTokenizer

transformers = pytest.importorskip("transformers")

SIZES = {
    "small": dict(width=32, heads=4, layers=2, mlp=64, image=32, patch=8, act="gelu_pytorch_tanh", ctx=16),
    "wider": dict(width=48, heads=3, layers=3, mlp=96, image=48, patch=16, act="gelu_pytorch_tanh", ctx=12),
    "erf-gelu": dict(width=32, heads=2, layers=1, mlp=128, image=32, patch=4, act="gelu", ctx=8),
}
CAPTIONS = ["a red circle", "two blue squares", "a photo of a green star", "the small yellow triangle"]


def _hf_siglip(size: str, seed: int = 0):
    s = SIZES[size]
    cfg = transformers.SiglipConfig(
        text_config=dict(
            vocab_size=64, hidden_size=s["width"], intermediate_size=s["mlp"], num_hidden_layers=s["layers"],
            num_attention_heads=s["heads"], max_position_embeddings=s["ctx"], hidden_act=s["act"], eos_token_id=1,
            pad_token_id=1, bos_token_id=None,
        ),
        vision_config=dict(
            hidden_size=s["width"], intermediate_size=s["mlp"], num_hidden_layers=s["layers"],
            num_attention_heads=s["heads"], image_size=s["image"], patch_size=s["patch"], hidden_act=s["act"],
        ),
    )
    torch.manual_seed(seed)
    model = transformers.SiglipModel(cfg).eval()
    with torch.no_grad():  # random init leaves some parameters at 0/1; perturb every one so each is checked
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _hf_features(model, pixels, ids):
    with torch.no_grad():
        img, txt = model.get_image_features(pixel_values=pixels), model.get_text_features(input_ids=ids)
        out = model(input_ids=ids, pixel_values=pixels)
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    return img, txt, out.logits_per_image


def _spiece(directory, ctx: int) -> None:
    """A small SentencePiece model trained here, saved as SigLIP's tokenizer files."""
    spm = pytest.importorskip("sentencepiece")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CAPTIONS * 50), model_writer=buf, vocab_size=40, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2,
    )
    (directory / "spiece.model").write_bytes(buf.getvalue())
    transformers.SiglipTokenizer(vocab_file=str(directory / "spiece.model"), model_max_length=ctx).save_pretrained(
        directory
    )


@pytest.mark.parametrize("size", list(SIZES))
def test_features_and_logits_equal_transformers(size, tmp_path):
    hf = _hf_siglip(size)
    hf.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="tokenizer files are missing"):
        model, preprocess, _ = clipforge.load(tmp_path, device="cpu")
    s = SIZES[size]
    pixels = torch.randn(3, 3, s["image"], s["image"])
    ids = torch.randint(0, 64, (3, s["ctx"]))
    img, txt, logits = _hf_features(hf, pixels, ids)
    torch.testing.assert_close(model.encode_image(pixels), img, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.encode_text(ids), txt, atol=1e-5, rtol=0)
    ours = model.logits(model.encode_image(pixels, normalize=True), model.encode_text(ids, normalize=True))
    torch.testing.assert_close(ours, logits, atol=1e-4, rtol=0)
    assert model.logit_bias is not None and model.config.vision.pool == "map" and not model.config.text.causal


def test_tokenizer_and_preprocessing_come_from_the_checkpoint_files(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    hf = _hf_siglip("small")
    hf.save_pretrained(tmp_path)
    _spiece(tmp_path, SIZES["small"]["ctx"])
    processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    processor.save_pretrained(tmp_path)
    model, preprocess, tok = clipforge.load(tmp_path, device="cpu")
    assert isinstance(tok, HFTokenizer)
    reference = transformers.SiglipTokenizer.from_pretrained(tmp_path)
    texts = [*CAPTIONS, "A Photo, of a STAR!", "a " * 40]
    expected = reference(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    assert torch.equal(tok(texts), expected["input_ids"])  # padded to the context, ended by </s>, cut when long
    assert tok.decode(tok(["a red circle"])[0]) == "a red circle"
    with pytest.raises(ValueError, match="more than context_length=16"):
        tok(["a " * 40], truncate="error")
    image = Image.fromarray(skimage_data.astronaut())
    pixels = torch.from_numpy(processor(images=image, return_tensors="np")["pixel_values"])
    torch.testing.assert_close(preprocess(image)[None], pixels, atol=1e-6, rtol=0)
    img, txt, _ = _hf_features(hf, pixels, expected["input_ids"])
    torch.testing.assert_close(model.encode_image(preprocess(image)[None]), img, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.encode_text(tok(texts)), txt, atol=1e-5, rtol=0)


def test_without_tokenizer_files_images_encode_and_text_names_the_files(tmp_path):
    _hf_siglip("small").save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="spiece.model"):
        model, preprocess, tok = clipforge.load(tmp_path, device="cpu")
    assert isinstance(tok, MissingTokenizer)
    assert model.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 32)
    with pytest.raises(FileNotFoundError, match=f"tokenizer_config.json and one of .* in {tmp_path}"):
        tok(["a red circle"])


def test_engines_refuse_and_auto_takes_the_plain_model(tmp_path):
    _hf_siglip("small").save_pretrained(tmp_path)
    _spiece(tmp_path, 16)
    model, _, _ = clipforge.load(tmp_path, device="cpu", backend="auto")
    assert isinstance(model, clipforge.CLIP)
    with pytest.raises(ValueError, match="SigLIP's layout.*backend 'none'"):
        clipforge.load(tmp_path, device="cpu", backend="torch")
    with pytest.raises(ValueError, match="attention head"):
        encode_dense(model, torch.randn(1, 3, 32, 32))


def test_export_round_trips_through_transformers_and_native(tmp_path):
    hf = _hf_siglip("wider")
    hf.save_pretrained(tmp_path / "src")
    _spiece(tmp_path / "src", 12)
    model, _, tok = clipforge.load(tmp_path / "src", device="cpu")
    export(model, tmp_path / "hf", "hf", tokenizer=tok)
    back = transformers.SiglipModel.from_pretrained(tmp_path / "hf").eval()  # strict: every weight present
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "siglip"
    pixels, ids = torch.randn(2, 3, 48, 48), tok(CAPTIONS[:2])
    for a, b in zip(_hf_features(back, pixels, ids), _hf_features(hf, pixels, ids)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    exported = transformers.SiglipTokenizer.from_pretrained(tmp_path / "hf")
    ref = exported(CAPTIONS[:2], padding="max_length", truncation=True, max_length=12, return_tensors="pt")
    assert torch.equal(ref["input_ids"], ids)
    export(model, tmp_path / "native", "native", tokenizer=tok)
    again, _, tok2 = clipforge.load(tmp_path / "native", device="cpu")
    torch.testing.assert_close(again.encode_text(tok2(CAPTIONS)), model.encode_text(tok(CAPTIONS)), atol=0, rtol=0)
    assert again.fingerprint() == model.fingerprint()
    with pytest.raises(Exception, match="tanh form|SigLIP layout"):
        export(model, tmp_path / "oc", "openclip")
    assert read_checkpoint(tmp_path / "hf").source_format == "hf"


def test_classify_command_runs_on_a_siglip_checkpoint(tmp_path, capsys):
    from PIL import Image

    from clipforge.cli.main import main

    _hf_siglip("small").save_pretrained(tmp_path / "m")
    _spiece(tmp_path / "m", 16)
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    code = main(["classify", str(tmp_path / "red.png"), "--model", str(tmp_path / "m"), "--labels", "red,blue",
                 "--json"])
    out = capsys.readouterr().out
    assert code == 0 and "red" in out and "blue" in out


def test_config_checks_and_fingerprints_of_earlier_models():
    from clipforge.config import ModelConfig, VisionConfig

    with pytest.raises(ValueError, match="pool 'cls' reads the class token"):
        VisionConfig(class_token=False)
    with pytest.raises(ValueError, match="embed_dim is 512"):
        ModelConfig(embed_dim=512, vision=VisionConfig(width=768, heads=12, proj=False, pool="mean"))
    tiny = clipforge.create_model("tiny").config
    assert "class_token" not in tiny.identity()["vision"] and "proj_bias" not in tiny.identity()["text"]
    siglip = tiny.replace(vision={"class_token": False, "pool": "map"})
    assert siglip.identity()["vision"]["class_token"] is False


def test_training_continues_a_siglip_checkpoint_and_keeps_its_tokenizer(tmp_path):
    from clipforge.cli.main import main

    _hf_siglip("small").save_pretrained(tmp_path / "m")
    _spiece(tmp_path / "m", 16)
    before, _, _ = clipforge.load(tmp_path / "m", device="cpu")
    args = ["train", "--out-dir", str(tmp_path / "run"), "--init", str(tmp_path / "m"), "--loss", "siglip",
            "--data", "shapes:32", "--batch-size", "8", "--max-steps", "2", "--val-data", "none", "--workers", "0"]
    assert main(args) == 0
    after, _, tok = clipforge.load(tmp_path / "run" / "final", device="cpu")
    assert isinstance(tok, HFTokenizer) and after.config.vision.pool == "map"
    assert after.fingerprint() != before.fingerprint()  # the weights moved
    assert torch.isfinite(after.encode_text(tok(CAPTIONS))).all()


def test_info_names_the_family_its_tokenizer_and_what_runs(tmp_path, capsys):
    from clipforge.cli.main import main

    _hf_siglip("small").save_pretrained(tmp_path)
    _spiece(tmp_path, 16)
    assert main(["info", str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "siglip" and info["format"] == "hf" and info["tokenizer"]["kind"] == "hf"
    assert "SigLIP's layout" in info["fast_engines"]
    assert main(["info"]) == 0
    assert "HF SiglipModel" in capsys.readouterr().out


def test_prompt_learning_rows_follow_the_tokenizer_layout(tmp_path):
    from clipforge.adapt.prompts import PromptTokens

    _spiece(tmp_path, 16)
    siglip_tok = HFTokenizer(tmp_path, context_length=16)
    bpe_tok = clipforge.get_tokenizer("tiny")
    for tok in (siglip_tok, bpe_tok):  # no context vectors: exactly the plain tokenization of "NAME."
        plain = PromptTokens(tok, ["red circle", "blue star"], n_ctx=0)
        assert torch.equal(plain.tokens, tok(["red circle.", "blue star."]))
    slots = PromptTokens(siglip_tok, ["red circle"], n_ctx=3).slots
    assert slots.tolist() == [[0, 1, 2]]  # SigLIP rows have no start token: the context comes first
    assert PromptTokens(bpe_tok, ["red circle"], n_ctx=3).slots.tolist() == [[1, 2, 3]]


def test_an_openclip_hf_tokenizer_runs_from_files_beside_the_weights(tmp_path):
    export(clipforge.create_model("tiny"), tmp_path / "oc", "openclip")
    path = tmp_path / "oc" / "open_clip_config.json"
    data = json.loads(path.read_text())
    data["model_cfg"]["text_cfg"].update(hf_tokenizer_name="org/tok", pool_type="eos", eos_id=1)
    path.write_text(json.dumps(data))
    _spiece(tmp_path / "oc", 16)
    _, _, tok = clipforge.load(tmp_path / "oc", device="cpu")
    assert isinstance(tok, HFTokenizer) and isinstance(clipforge.get_tokenizer(tmp_path / "oc"), HFTokenizer)
    assert tok(["a red circle"])[0, -1].item() == 1  # padded with the tokenizer's own pad id (</s>)
