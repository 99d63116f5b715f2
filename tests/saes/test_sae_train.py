"""SAE training (saes.train), SAE-Lens-format save/load (saes.io), activation sources."""

from __future__ import annotations

import pytest
import torch

from tests.support.tiny import random_sae, random_tokens, tiny_loaded


def small_cfg(**kw):
    from saes.config import SAETrainConfig

    base = dict(arch="topk", d_sae=64, k=4, batch_tokens=32, total_tokens=32 * 40,
                n_checkpoints=3, dead_feature_window=20, lr=3e-3)
    base.update(kw)
    return SAETrainConfig(**base)


def buffer(seed=0):
    from saes.activations import collect_hook_z

    return collect_hook_z(tiny_loaded(), random_tokens(seed=seed), layer=1).z


def test_collect_hook_z_drops_padding_and_matches_run_with_cache():
    from saes.activations import collect_hook_z

    loaded, tokens = tiny_loaded(), random_tokens(pad_from=9)
    got = collect_hook_z(loaded, tokens, layer=1, batch_size=5)
    assert got.z.shape == (int(tokens.attention_mask.sum()), 4, 8)
    _, cache = loaded.model.run_with_cache(tokens.ids, names_filter="blocks.1.attn.hook_z")
    ref = cache["blocks.1.attn.hook_z"][got.prompt_idx, got.pos]
    assert torch.allclose(got.z, ref, atol=1e-5)  # right padding never changes real tokens
    assert not tokens.attention_mask[got.prompt_idx, got.pos].eq(0).any()


@pytest.mark.parametrize("arch", ["topk", "jumprelu", "standard"])
def test_train_save_and_load_through_sae_lens(tmp_path, arch):
    import sae_lens

    from saes.encode import encode
    from saes.io import load_sae
    from saes.train import train_on_buffer

    acts = buffer()
    res = train_on_buffer(acts.flatten(1), 1, small_cfg(arch=arch), "tiny", tmp_path / "sae")
    assert res.n_steps == 40 and res.n_tokens == 40 * 32
    loaded = sae_lens.SAE.load_from_disk(str(tmp_path / "sae"))  # SAE-Lens' own loader
    assert loaded.cfg.reshape_activations == "hook_z"
    assert loaded.cfg.metadata.hook_name == "blocks.1.attn.hook_z"
    assert loaded.cfg.architecture() == arch
    ours = load_sae(tmp_path / "sae")
    for name, p in res.sae.state_dict().items():
        assert torch.equal(p, ours.state_dict()[name]), name
    # the head-shaped and flat inputs encode alike, and as SAE-Lens' own encode does
    a = encode(ours, acts).acts
    b = encode(ours, acts.flatten(1)).acts
    ref = loaded.encode(acts)  # SAE-Lens flattens hook_z input itself
    assert torch.allclose(a, b) and torch.allclose(a, ref, atol=1e-5)


def test_training_reduces_reconstruction_error(tmp_path):
    from saes.evaluate import ReconStats, reconstruct
    from saes.train import train_on_buffer

    acts = buffer()
    short = train_on_buffer(acts.flatten(1), 1, small_cfg(total_tokens=32), "tiny").sae
    long = train_on_buffer(acts.flatten(1), 1, small_cfg(total_tokens=32 * 150), "tiny").sae
    ev = []
    for sae in (short, long):
        stats = ReconStats(64)
        z_hat, f = reconstruct(sae, acts)
        stats.update(acts, z_hat, f, torch.ones(acts.shape[0]))
        ev.append(stats.result()["explained_variance"])
    assert ev[1] > ev[0] + 0.1 and ev[1] > 0.6


class Interrupt:
    """Wraps the batch iterator and raises KeyboardInterrupt after `after` batches."""

    def __init__(self, after: int):
        self.after = after

    def __call__(self, it):
        def gen():
            for i, batch in enumerate(it):
                if i == self.after:
                    raise KeyboardInterrupt
                yield batch

        return gen()


def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path):
    from saes.train import latest_checkpoint, train_on_buffer

    acts, cfg = buffer().flatten(1), small_cfg()
    full = train_on_buffer(acts, 1, cfg, "tiny", tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_on_buffer(acts, 1, cfg, "tiny", tmp_path / "cut", data_wrapper=Interrupt(23))
    ckpt = latest_checkpoint(tmp_path / "cut" / "checkpoints")
    assert ckpt is not None and int(ckpt.name) == 23 * 32
    assert not (tmp_path / "cut" / "cfg.json").exists()  # no final SAE yet
    resumed = train_on_buffer(acts, 1, cfg, "tiny", tmp_path / "cut")
    assert resumed.resumed_from == 23 * 32 and resumed.n_steps == full.n_steps
    for name, p in full.sae.state_dict().items():
        assert torch.allclose(p, resumed.sae.state_dict()[name], atol=1e-6), name
    fresh = train_on_buffer(acts, 1, cfg, "tiny", tmp_path / "cut", resume=False)
    assert fresh.resumed_from == 0


def test_shuffled_batches_resume_exactly():
    from saes.activations import ShuffledBatches

    buf = torch.arange(10.0)[:, None]
    a = ShuffledBatches(buf, 4, seed=1)
    stream = torch.cat([next(a) for _ in range(6)])[:, 0]  # 2.4 epochs
    for epoch in range(2):  # each epoch is a permutation of the buffer
        assert sorted(stream[epoch * 10 : (epoch + 1) * 10].tolist()) == list(range(10))
    b = ShuffledBatches(buf, 4, seed=1, start=8)
    assert torch.equal(torch.cat([next(b) for _ in range(4)])[:, 0], stream[8:24])


def test_bad_configs_and_mismatched_d_in_raise_clear_errors(tmp_path):
    from saes.activations import check_sae_fits
    from saes.config import SAETrainConfig
    from saes.train import as_buffer, train_attention_sae

    with pytest.raises(ValueError, match="arch"):
        SAETrainConfig(arch="gated")
    with pytest.raises(ValueError, match="k=99"):
        SAETrainConfig(d_sae=64, k=99)
    with pytest.raises(ValueError, match="total_tokens"):
        SAETrainConfig(batch_tokens=100, total_tokens=10)
    with pytest.raises(ValueError, match="d_in=32"):
        as_buffer(torch.zeros(10, 48), 32)
    with pytest.raises(ValueError, match="d_in=32"):
        train_attention_sae(tiny_loaded(), 1, small_cfg(), activations=torch.zeros(10, 3, 16))
    with pytest.raises(ValueError, match="layer"):
        train_attention_sae(tiny_loaded(), 5, small_cfg(), activations=torch.zeros(10, 32))

    with pytest.raises(ValueError, match="does not match blocks.1.attn.hook_z"):
        check_sae_fits(random_sae(48), tiny_loaded().model, 1)


def test_loads_sae_lens_saved_sae_and_shipped_lookup_errors(tmp_path):

    from saes.io import load_sae, load_shipped, sae_layer

    sae = random_sae(32)
    sae.save_model(str(tmp_path / "theirs"))  # written by SAE-Lens itself
    ours = load_sae(tmp_path / "theirs")
    assert sae_layer(ours) == 1
    assert torch.equal(ours.W_enc, sae.W_enc)
    with pytest.raises(FileNotFoundError, match="attnlab sae train"):
        load_sae(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no shipped SAE"):
        load_shipped("tiny", 7)


@pytest.mark.slow
def test_train_from_activation_shards_matches_live_activations(minilm, tmp_path):
    from data.sentences import builtin_sentences
    from probes.activation_writer import WriterConfig, write_activations
    from probes.tokens import tokenize
    from saes.activations import collect_hook_z
    from saes.shards import read_hook_z
    from saes.train import train_attention_sae

    prompts = builtin_sentences()[:12]
    write_activations(minilm, prompts, tmp_path / "acts", WriterConfig(layer=2, shard_tokens=64))
    acts = read_hook_z(tmp_path / "acts", layer=2, model="minilm")
    live = collect_hook_z(minilm, tokenize(minilm, prompts), 2).z  # padding dropped
    assert acts.shape == (live.shape[0], 384)
    assert torch.allclose(acts, live.flatten(1), atol=1e-4)
    assert read_hook_z(tmp_path / "acts", layer=2, n_tokens=50).shape == (50, 384)
    with pytest.raises(ValueError, match="layer 2, not 3"):
        read_hook_z(tmp_path / "acts", layer=3)
    res = train_attention_sae(minilm, 2, small_cfg(d_sae=32, total_tokens=32 * 5),
                              activations=acts, out_dir=tmp_path / "sae")
    assert res.sae.cfg.d_in == 384 and (tmp_path / "sae" / "cfg.json").is_file()
    with pytest.raises(ValueError, match="d_in=384"):
        train_attention_sae(minilm, 2, small_cfg(), activations=torch.zeros(10, 128))


def test_progress_bar_reaches_the_samples_of_every_step_run(monkeypatch):
    """SAE-Lens moves its bar every 100th step only: 130 steps stopped it at 100. The bar
    attnlab runs must end at its total, the samples of all steps taken."""
    import io

    import sae_lens.training.sae_trainer as trainer_module
    from tqdm import tqdm

    from saes.train import train_on_buffer

    bars = []

    class Recording(tqdm):
        def __init__(self, *a, **kw):
            super().__init__(*a, **{**kw, "file": io.StringIO()})  # drawn, off screen
            bars.append(self)

    monkeypatch.setattr(trainer_module, "tqdm", Recording)
    cfg = small_cfg(total_tokens=32 * 130, n_checkpoints=0)
    res = train_on_buffer(buffer().reshape(-1, 32), 1, cfg, "tiny")
    assert res.n_steps == 130
    assert len(bars) == 1
    assert bars[0].total == bars[0].n == res.n_steps * cfg.batch_tokens
