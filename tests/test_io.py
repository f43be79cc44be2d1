"""diffsim.io: ds.save/ds.load round trips, atomicity, corruption detection, trajectories."""
import collections
import gc
import io
import os
import subprocess
import sys
import tracemalloc
import weakref

import h5py
import numpy as np
import pytest

import diffsim as ds
import diffsim.io as dio
from diffsim.io import LoadError


def check_equal(a, b):
    """Deep equality that also checks types, dtypes, shapes and key order."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, ds.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
        assert not b.requires_grad and b.grad is None
        np.testing.assert_array_equal(a.detach().numpy(), b.numpy())
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys())
        assert [type(k) for k in a] == [type(k) for k in b]
        for k in a:
            check_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            check_equal(x, y)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def _roundtrip(obj, tmp_path, **kw):
    p = tmp_path / "obj.h5"
    dio.save(obj, p, **kw)
    return dio.load(p)


# --------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                   "bool", "uint8"])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (4, 3), (2, 3, 4)])
def test_tensor_roundtrip_dtypes_shapes(tmp_path, dtype, shape):
    rng = np.random.default_rng(0)
    a = np.asarray((rng.standard_normal(shape) * 50)).astype(dtype)
    a = np.asarray(a)
    t = ds.from_numpy(a)
    out = _roundtrip(t, tmp_path)
    check_equal(t, out)


def test_large_tensor_is_chunked_and_compressed(tmp_path):
    big = ds.randn(300, 300, dtype=ds.float64)          # 720 KB > 64 KiB
    small = ds.randn(10, 10)
    p = tmp_path / "big.h5"
    for comp in ("gzip", "lzf", None, 3):
        dio.save({"big": big, "small": small}, p, compression=comp)
        with h5py.File(p, "r") as f:
            b, s = f["root/0"], f["root/1"]
            assert b.chunks is not None and s.chunks is None
            assert b.compression == ({"gzip": "gzip", "lzf": "lzf", None: None, 3: "gzip"}[comp])
        check_equal({"big": big, "small": small}, dio.load(p))
    with pytest.raises(ValueError, match="compression"):
        dio.save(big, p, compression="zstd")


def test_noncontiguous_and_requires_grad_and_views(tmp_path):
    base = ds.arange(24, dtype=ds.float64).reshape(4, 6)
    nc = base.transpose(0, 1)[:, ::2]
    w = ds.randn(3, 3, dtype=ds.float64, requires_grad=True)
    (w * 2).sum().backward()
    out = _roundtrip({"nc": nc, "w": w, "arr": np.arange(20.0).reshape(4, 5)[::2, ::-1]}, tmp_path)
    np.testing.assert_array_equal(out["nc"].numpy(), nc.numpy())
    assert out["nc"].shape == nc.shape
    assert not out["w"].requires_grad and out["w"].grad is None
    np.testing.assert_array_equal(out["w"].numpy(), w.detach().numpy())
    np.testing.assert_array_equal(out["arr"], np.arange(20.0).reshape(4, 5)[::2, ::-1])


def test_python_values_and_numpy(tmp_path):
    obj = [None, True, False, 0, -7, 2 ** 63 - 1, -(2 ** 63), 2 ** 80, -(3 ** 60), 1.5, float("inf"),
           float("nan"), -0.0, "", "héllo wörld ∂", b"\x00\x01bytes", b"",
           np.float32(2.5), np.int64(-3), np.bool_(True), np.arange(5, dtype=np.uint16),
           np.array([1 + 2j, 3 - 1j]), np.zeros((2, 0)), np.array(7.0), (), [], {}, (1, (2, [3]))]
    out = _roundtrip(obj, tmp_path)
    check_equal(obj, out)
    assert type(out[17]) is np.float32 and type(out[19]) is np.bool_
    assert out[22].shape == (2, 0) and out[23].shape == ()
    assert str(out[12]) == "-0.0"


def test_lists_of_numbers_are_packed(tmp_path):
    losses = [float(x) for x in np.random.default_rng(0).random(20000)]
    obj = {"losses": losses, "steps": list(range(5000)), "flags": (True, False, True),
           "betas": (0.9, 0.999), "mixed": [True, 1, 1.0], "huge": [1, 2 ** 70], "ints_floats": [1, 2.0],
           "nested": [[1.0, 2.0], [3, 4]]}
    obj["same"] = obj["losses"]
    p = tmp_path / "packed.h5"
    dio.save(obj, p)
    with h5py.File(p, "r") as f:
        assert f["root/0"].attrs["kind"] == "float_list" and f["root/0"].shape == (20000,)
        assert f["root/2"].attrs["kind"] == "bool_tuple" and f["root/3"].attrs["kind"] == "float_tuple"
        assert f["root/4"].attrs["kind"] == "list" and f["root/5"].attrs["kind"] == "list"
    out = dio.load(p)
    check_equal(obj, out)
    assert [type(v) for v in out["mixed"]] == [bool, int, float]
    assert out["same"] is out["losses"]


def test_nested_keys_types_and_order(tmp_path):
    d = collections.OrderedDict()
    d["z"] = 1
    d[3] = "three"
    d["a"] = {10: ds.tensor([1.0]), "10": ds.tensor([2.0]), 2: {1: [1, 2], 0: (3,)}}
    d[-1] = None
    d[True] = "bool key"
    d[2.5] = "float key"
    d[None] = "none key"
    out = _roundtrip(d, tmp_path)
    assert type(out) is collections.OrderedDict
    assert type(out["a"]) is dict
    check_equal(d, out)
    assert list(out["a"].keys()) == [10, "10", 2]
    assert list(out["a"][2].keys()) == [1, 0]


def _mlp_state_dict():
    """A module-like state_dict built from plain tensors (no dependency on diffsim.nn)."""
    sd = collections.OrderedDict()
    sizes = [4, 32, 32, 2]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        sd[f"layers.{i}.weight"] = ds.randn(b, a, requires_grad=True)
        sd[f"layers.{i}.bias"] = ds.zeros(b, requires_grad=True)
    sd["bn.running_mean"] = ds.zeros(32)
    sd["bn.num_batches_tracked"] = ds.tensor(7, dtype=ds.int64)
    return sd


def test_module_state_dict_roundtrip(tmp_path):
    sd = _mlp_state_dict()
    out = _roundtrip(sd, tmp_path)
    assert type(out) is collections.OrderedDict and list(out) == list(sd)
    for k in sd:
        assert out[k].dtype == sd[k].dtype and out[k].shape == sd[k].shape
        assert not out[k].requires_grad
        np.testing.assert_array_equal(out[k].numpy(), sd[k].detach().numpy())


def test_optimizer_like_state_dict(tmp_path):
    params = [ds.randn(3, 3), ds.randn(3)]
    opt = {"state": {0: {"step": ds.tensor(10.0), "exp_avg": ds.randn(3, 3), "exp_avg_sq": ds.rand(3, 3)},
                     1: {"step": ds.tensor(10.0), "exp_avg": ds.randn(3), "exp_avg_sq": ds.rand(3),
                         "momentum_buffer": None}},
           "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                             "amsgrad": False, "maximize": False, "foreach": None, "params": [0, 1]}]}
    ckpt = {"model": {"w": params[0], "b": params[1]}, "optimizer": opt, "epoch": 5,
            "losses": [0.5, 0.25], "rng": np.random.default_rng(0).integers(0, 2 ** 32, 8, dtype=np.uint32)}
    out = _roundtrip(ckpt, tmp_path)
    check_equal(ckpt, out)
    assert set(out["optimizer"]["state"]) == {0, 1}
    assert out["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)


def test_shared_objects_saved_once(tmp_path):
    t = ds.randn(200, 200)          # 160 KB
    lst = [1, 2]
    obj = {"a": t, "b": t, "alias": t.detach(), "l1": lst, "l2": lst, "arr": np.ones(3)}
    obj["arr2"] = obj["arr"]
    p = tmp_path / "shared.h5"
    dio.save(obj, p)
    dio.save({"a": t}, tmp_path / "single.h5")
    assert os.path.getsize(p) < 1.3 * os.path.getsize(tmp_path / "single.h5")
    out = dio.load(p)
    assert out["a"] is out["b"]
    assert out["alias"] is not out["a"] and np.shares_memory(out["alias"].numpy(), out["a"].numpy())
    assert out["l1"] is out["l2"] and out["arr"] is out["arr2"]
    np.testing.assert_array_equal(out["a"].numpy(), t.numpy())


def test_unsupported_and_cyclic(tmp_path):
    p = tmp_path / "bad.h5"
    with pytest.raises(TypeError, match=r"obj\['x'\]\[1\].*object"):
        dio.save({"x": [1, object()]}, p)
    with pytest.raises(TypeError, match="keys"):
        dio.save({(1, 2): 3}, p)
    with pytest.raises(TypeError, match="dtype"):
        dio.save(np.array(["a", "b"]), p)
    cyc = [1]
    cyc.append(cyc)
    with pytest.raises(ValueError, match="cyclic"):
        dio.save(cyc, p)
    assert not p.exists() and os.listdir(tmp_path) == []


def test_file_like_objects():
    buf = io.BytesIO()
    sd = _mlp_state_dict()
    dio.save(sd, buf)
    buf.seek(0)
    out = dio.load(buf)
    assert list(out) == list(sd)


def test_map_location(tmp_path):
    p = tmp_path / "m.h5"
    dio.save({"w": ds.randn(2, 2), "n": np.ones(2)}, p)
    for ml in (None, "cpu", ds.autodiff.backend.Device("cpu"), {"cuda:0": "cpu"}):
        out = dio.load(p, map_location=ml)
        assert out["w"].device == "cpu" and isinstance(out["n"], np.ndarray)
    seen = []

    def fn(t, loc):
        seen.append(loc)
        return t * 2

    out = dio.load(p, map_location=fn)
    assert seen == ["cpu"]
    np.testing.assert_array_equal(out["w"].numpy(), 2 * dio.load(p)["w"].numpy())
    assert dio.load(p, map_location=lambda t, loc: None)["w"].device == "cpu"
    with pytest.raises(TypeError, match="map_location"):
        dio.load(p, map_location=lambda t, loc: "nope")
    with pytest.raises(TypeError, match="map_location"):
        dio.load(p, map_location=3)

    # a file saved on a GPU: rewrite the device attribute, then load it here with map_location
    with h5py.File(p, "r+") as f:
        f["root/0"].attrs["device"] = "cuda:0"
    out = dio.load(p, map_location="cpu")
    assert out["w"].device == "cpu"
    out = dio.load(p, map_location={"cuda:0": "cpu"})
    assert out["w"].device == "cpu"
    seen.clear()
    dio.load(p, map_location=fn)
    assert seen == ["cuda:0"]
    if not ds.cuda.is_available():
        with pytest.raises(RuntimeError, match="map_location='cpu'") as e:
            dio.load(p)
        assert not isinstance(e.value, LoadError)


@pytest.mark.cuda
def test_map_location_cuda(tmp_path):
    p = tmp_path / "g.h5"
    t = ds.randn(3, 3).to("cuda")
    dio.save({"t": t}, p)
    with h5py.File(p, "r") as f:
        assert f["root/0"].attrs["device"] == "cuda:0"
    assert dio.load(p)["t"].device == "cuda:0"
    assert dio.load(p, map_location="cpu")["t"].device == "cpu"
    c = dio.load(p, map_location={"cuda:0": "cpu"})["t"]
    assert c.device == "cpu"
    np.testing.assert_array_equal(c.numpy(), t.cpu().numpy())
    dio.save({"t": ds.ones(2)}, p)
    assert dio.load(p, map_location="cuda")["t"].device == "cuda:0"


# --------------------------------------------------------------------- file format
def test_format_attributes_readable_by_plain_h5py(tmp_path):
    p = tmp_path / "f.h5"
    dio.save(collections.OrderedDict(w=ds.ones(2, 3), step=3, name="run", b=ds.tensor([True, False])), p)
    with h5py.File(p, "r") as f:
        assert f.attrs["diffsim_format"] == "diffsim"
        assert int(f.attrs["diffsim_format_version"]) == dio.FORMAT_VERSION
        root = f["root"]
        assert root.attrs["kind"] == "OrderedDict" and list(root.attrs["key_types"]) == ["str"] * 4
        assert [k.decode() if isinstance(k, bytes) else k for k in root.attrs["keys"]] == ["w", "step", "name", "b"]
        w = root["0"]
        assert w.attrs["kind"] == "tensor" and w.attrs["dtype"] == "float32" and w.attrs["device"] == "cpu"
        assert list(w.attrs["shape"]) == [2, 3] and w.shape == (2, 3)
        np.testing.assert_array_equal(w[()], np.ones((2, 3), np.float32))
        assert root["1"][()] == 3 and root["2"].attrs["value"] == "run"
        assert root["3"].dtype == np.uint8 and root["3"].attrs["dtype"] == "bool"


# --------------------------------------------------------------------- atomicity
def test_exception_during_save_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "ckpt.h5"
    old = {"w": ds.ones(100, 100), "v": 1}
    dio.save(old, p)
    before = p.read_bytes()
    from diffsim.io import serialization

    calls = {"n": 0}
    real = serialization._Writer._write_array

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(self, *a, **k)

    monkeypatch.setattr(serialization._Writer, "_write_array", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        dio.save({"a": ds.zeros(300, 300), "b": ds.zeros(5), "c": ds.zeros(5)}, p)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.h5"]
    check_equal(old, dio.load(p))
    # a TypeError discovered halfway also leaves nothing behind
    monkeypatch.undo()
    with pytest.raises(TypeError):
        dio.save({"ok": ds.zeros(3), "bad": set()}, p)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.h5"] and p.read_bytes() == before


def test_killed_process_mid_save_keeps_old_file(tmp_path):
    p = tmp_path / "ckpt.h5"
    dio.save({"w": ds.ones(4)}, p)
    before = p.read_bytes()
    code = f"""
import os, signal
import diffsim as ds, diffsim.io as dio
from diffsim.io import serialization
real = serialization._Writer._write_array
n = [0]
def hook(self, *a, **k):
    n[0] += 1
    if n[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *a, **k)
serialization._Writer._write_array = hook
dio.save({{"a": ds.zeros(100, 100), "b": ds.zeros(100), "c": ds.zeros(10)}}, {str(p)!r})
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode != 0
    assert p.read_bytes() == before
    np.testing.assert_array_equal(dio.load(p)["w"].numpy(), np.ones(4, np.float32))
    # a hard kill cannot clean up: at most a hidden temp file is left, never a broken ckpt.h5
    leftovers = [n for n in os.listdir(tmp_path) if n != "ckpt.h5"]
    assert all(n.startswith(".ckpt.h5.") and n.endswith(".tmp") for n in leftovers)


def test_save_replaces_and_keeps_permissions(tmp_path):
    p = tmp_path / "x.h5"
    dio.save(1, p)
    dio.save(2, str(p))
    assert dio.load(p) == 2
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(IsADirectoryError):
        dio.save(1, tmp_path)


# --------------------------------------------------------------------- damaged files
@pytest.fixture
def good_file(tmp_path):
    p = tmp_path / "good.h5"
    dio.save({"w": ds.randn(300, 300), "small": ds.arange(64, dtype=ds.float64), "step": 12}, p)
    return p


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        dio.load(tmp_path / "nope.h5")


def test_truncated_file(good_file):
    data = good_file.read_bytes()
    good_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadError, match="good.h5"):
        dio.load(good_file)


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file at all",
                                     bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8))])
def test_non_hdf5_file(tmp_path, content):
    p = tmp_path / "junk.h5"
    p.write_bytes(content)
    with pytest.raises(LoadError, match="junk.h5.*not a readable HDF5"):
        dio.load(p)


def test_foreign_hdf5_file(tmp_path):
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("root", data=np.arange(3))
    with pytest.raises(LoadError, match="foreign.h5.*not written by diffsim"):
        dio.load(p)


def test_newer_version_and_wrong_format(tmp_path, good_file):
    with h5py.File(good_file, "r+") as f:
        f.attrs["diffsim_format_version"] = np.int64(dio.FORMAT_VERSION + 1)
    with pytest.raises(LoadError, match="newer"):
        dio.load(good_file)
    p = tmp_path / "traj.h5"
    with dio.TrajectoryWriter(p) as w:
        w.append(x=1.0)
    with pytest.raises(LoadError, match="read_trajectory"):
        dio.load(p)
    with pytest.raises(LoadError, match="ds.load"):
        dio.TrajectoryReader(good_file)


def _flip_byte(path, offset):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x10]))


def test_flipped_byte_in_contiguous_dataset(good_file):
    with h5py.File(good_file, "r") as f:
        ds_ = f["root/1"]
        assert ds_.chunks is None
        off = ds_.id.get_offset()
    _flip_byte(good_file, off + 100)
    with pytest.raises(LoadError, match="checksum"):
        dio.load(good_file)


def test_flipped_byte_in_compressed_chunk(good_file):
    with h5py.File(good_file, "r") as f:
        d = f["root/0"]
        assert d.chunks is not None
        info = d.id.get_chunk_info(0)
        off, size = info.byte_offset, info.size
    _flip_byte(good_file, off + size // 2)
    with pytest.raises(LoadError, match="good.h5"):
        dio.load(good_file)


def test_flipped_byte_in_scalar(tmp_path):
    p = tmp_path / "s.h5"
    dio.save({"step": 123456789}, p)
    with h5py.File(p, "r") as f:
        off = f["root/0"].id.get_offset()
    _flip_byte(p, off)
    with pytest.raises(LoadError, match="checksum"):
        dio.load(p)


def test_metadata_mismatch(tmp_path):
    p = tmp_path / "m.h5"
    dio.save({"w": ds.ones(2, 3)}, p)
    with h5py.File(p, "r+") as f:
        f["root/0"].attrs["shape"] = np.array([3, 2], np.int64)
    with pytest.raises(LoadError, match="shape"):
        dio.load(p)
    dio.save({"w": ds.ones(2, 3)}, p)
    with h5py.File(p, "r+") as f:
        f["root/0"].attrs["dtype"] = "int32"
    with pytest.raises(LoadError, match="dtype"):
        dio.load(p)
    dio.save({"w": ds.ones(2, 3)}, p)
    with h5py.File(p, "r+") as f:
        f["root/0"].attrs["dtype"] = "object"
    with pytest.raises(LoadError):
        dio.load(p)
    dio.save({"w": ds.ones(2, 3), "v": 1}, p)
    with h5py.File(p, "r+") as f:
        del f["root/1"]
    with pytest.raises(LoadError, match="incomplete"):
        dio.load(p)
    dio.save([1, 2], p)
    with h5py.File(p, "r+") as f:
        f["root"].attrs["kind"] = "frobnicator"
    with pytest.raises(LoadError, match="frobnicator"):
        dio.load(p)


# --------------------------------------------------------------------- trajectories
def test_trajectory_append_and_slice(tmp_path):
    p = tmp_path / "run.h5"
    n = 1000
    with dio.TrajectoryWriter(p, chunk_steps=64, dt=0.01, attrs={"solver": "euler", "k": 2.5}) as w:
        x = ds.zeros(5, 3, dtype=ds.float64)
        for i in range(n):
            x = x + 1.0
            w.append(x=x, v=ds.full((5, 3), float(-i)), t=i * 0.01, step=i, hit=(i % 2 == 0))
        assert len(w) == n
        assert not p.exists()              # nothing at path until close
    assert p.exists() and os.listdir(tmp_path) == ["run.h5"]
    with dio.TrajectoryReader(p) as r:
        assert len(r) == n and r.fields == ["x", "v", "t", "step", "hit"]
        assert r.dt == 0.01 and r.attrs["solver"] == "euler" and r.attrs["k"] == 2.5
        assert r.complete
        xs = r["x"][10:20]
        assert isinstance(xs, ds.Tensor) and xs.shape == (10, 5, 3) and xs.dtype == ds.float64
        np.testing.assert_array_equal(xs.numpy()[:, 0, 0], np.arange(11, 21))
        assert r["v"].dtype == ds.float32 and r["v"].shape == (n, 5, 3)
        assert r["x"][-1].shape == (5, 3) and r["x"][-1].numpy()[0, 0] == n
        assert r["step"][999].item() == 999 and r["step"].dtype == np.int64
        assert r["hit"][:4].dtype == ds.bool and r["hit"][:4].tolist() == [True, False, True, False]
        np.testing.assert_allclose(r["t"][::100].numpy(), np.arange(0, n, 100) * 0.01)
        np.testing.assert_array_equal(r["x"][5:7, 0, 1].numpy(), [6, 7])
        step = r[3]
        assert list(step) == r.fields and step["x"].numpy()[0, 0] == 4
        with pytest.raises(IndexError):
            r["x"][n]
        with pytest.raises(KeyError):
            r["nope"]
    with h5py.File(p, "r") as f:      # readable with plain h5py
        assert f["x"].shape == (n, 5, 3) and f["x"].chunks[0] == 64 and f["x"].fletcher32
    full = dio.read_trajectory(p)
    assert list(full) == ["x", "v", "t", "step", "hit"] and full["x"].shape == (n, 5, 3)


def test_trajectory_state_dict_append_and_validation(tmp_path):
    p = tmp_path / "s.h5"
    with dio.TrajectoryWriter(p, fields=["q", "p"]) as w:
        w.append({"q": np.zeros(2), "p": np.ones(2)})
        w.append({"q": np.zeros(2)}, p=np.ones(2))
        with pytest.raises(ValueError, match="missing"):
            w.append(q=np.zeros(2))
        with pytest.raises(ValueError, match="shape"):
            w.append(q=np.zeros(3), p=np.ones(2))
        with pytest.raises(ValueError, match="dtype"):
            w.append(q=np.zeros(2, np.float32), p=np.ones(2))
        with pytest.raises(TypeError):
            w.append(q="abc", p=np.ones(2))
    with dio.TrajectoryReader(p) as r:
        assert len(r) == 2
    with pytest.raises(FileExistsError):
        dio.TrajectoryWriter(p)
    with dio.TrajectoryWriter(p, overwrite=True) as w:
        w.append(a=1)
    assert dio.read_trajectory(p)["a"].tolist() == [1]
    with pytest.raises(ValueError):
        dio.TrajectoryWriter(tmp_path / "y.h5", fields=["a/b"])
    with pytest.raises(TypeError, match="attribute 'cfg'"):
        dio.TrajectoryWriter(tmp_path / "y.h5", attrs={"cfg": {"a": 1}})
    w = dio.TrajectoryWriter(tmp_path / "y.h5", attrs={"gravity": [0.0, 0.0, -9.81], "n": 3})
    w.append(a=1)
    w.attrs["bad"] = object()
    with pytest.raises(TypeError, match="attribute 'bad'"):
        w.close()
    assert not w.closed                # nothing lost: fix the attribute and close again
    del w.attrs["bad"]
    w.close()
    r = dio.TrajectoryReader(tmp_path / "y.h5")
    assert r.attrs["gravity"].tolist() == [0.0, 0.0, -9.81] and r.attrs["n"] == 3
    r.close()
    assert sorted(os.listdir(tmp_path)) == ["s.h5", "y.h5"]


def test_trajectory_scalar_and_empty_fields(tmp_path):
    p = tmp_path / "z.h5"
    with dio.TrajectoryWriter(p, compression="lzf") as w:
        for i in range(5):
            w.append(contacts=ds.zeros(0, 3), energy=ds.tensor(float(i)), big=np.zeros((2, 300_000), np.float32))
    r = dio.TrajectoryReader(p)
    assert r["contacts"][:].shape == (5, 0, 3) and r["energy"][:].tolist() == [0, 1, 2, 3, 4]
    assert r["big"].shape == (5, 2, 300_000) and r["big"][4].shape == (2, 300_000)
    assert r.attrs == {} and r.dt is None
    r.close()


def test_trajectory_numpy_scalars_keep_their_dtype(tmp_path):
    # a numpy scalar is a 0-d array of its dtype, not a Python number (float32 stayed float64)
    p = tmp_path / "s.h5"
    with dio.TrajectoryWriter(p) as w:
        for i in range(3):
            w.append(f32=np.float32(i), i32=np.int32(i), u8=np.uint8(i), b=np.bool_(i % 2), f=float(i))
    r = dio.read_trajectory(p)
    assert r["f32"].dtype == ds.float32 and r["i32"].dtype == ds.int32 and r["u8"].dtype == ds.uint8
    assert r["b"].dtype == ds.bool and r["f"].dtype == ds.float64
    assert r["f32"].tolist() == [0, 1, 2] and r["b"].tolist() == [False, True, False]


def test_real_module_and_optimizer_state_dicts(tmp_path):
    """With diffsim.nn/optim present: a checkpoint restores a model and its Adam state."""
    nn = pytest.importorskip("diffsim.nn")
    optim = pytest.importorskip("diffsim.optim")
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    model(ds.randn(5, 4)).pow(2).sum().backward()
    opt.step()
    p = tmp_path / "ckpt.h5"
    dio.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, p)
    ck = dio.load(p)
    model2 = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model2.load_state_dict(ck["model"])
    opt2 = optim.Adam(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(ck["optimizer"])
    x = ds.randn(3, 4)
    np.testing.assert_array_equal(model(x).detach().numpy(), model2(x).detach().numpy())
    check_equal(opt.state_dict()["param_groups"], opt2.state_dict()["param_groups"])


def test_trajectory_memory_bounded_and_no_references(tmp_path):
    p = tmp_path / "mem.h5"
    w = dio.TrajectoryWriter(p, chunk_steps=32)
    refs = []
    x = ds.randn(64, 3)
    for i in range(100):
        y = x + float(i)
        w.append(x=y, t=float(i))
        refs.append(weakref.ref(y))
    del y
    gc.collect()
    assert all(r() is None for r in refs), "the writer keeps references to appended tensors"
    tracemalloc.start()
    for i in range(100):
        w.append(x=x, t=float(i))
    m1 = tracemalloc.get_traced_memory()[0]
    for i in range(2000):
        w.append(x=x, t=float(i))
    m2 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert m2 - m1 < 100_000, f"memory grew by {m2 - m1} bytes over 2000 steps"
    w.close()
    assert len(dio.TrajectoryReader(p)) == 2200


def test_trajectory_exception_keeps_partial_data(tmp_path):
    p = tmp_path / "partial.h5"
    with pytest.raises(ZeroDivisionError):
        with dio.TrajectoryWriter(p, chunk_steps=16) as w:
            for i in range(50):
                w.append(x=ds.full((2,), float(i)))
            1 / 0
    assert os.listdir(tmp_path) == ["partial.h5"]
    with pytest.warns(RuntimeWarning, match="incomplete"):
        r = dio.TrajectoryReader(p)
    assert not r.complete and "ZeroDivisionError" in r.error and len(r) == 50
    np.testing.assert_array_equal(r["x"][:, 0].numpy(), np.arange(50, dtype=np.float32))
    r.close()


def test_trajectory_exception_discard(tmp_path):
    p = tmp_path / "d.h5"
    with dio.TrajectoryWriter(p) as w:
        w.append(x=1.0)
    before = p.read_bytes()
    with pytest.raises(KeyError):
        with dio.TrajectoryWriter(p, overwrite=True, on_error="discard") as w:
            w.append(x=2.0)
            raise KeyError("boom")
    assert os.listdir(tmp_path) == ["d.h5"] and p.read_bytes() == before
    # a writer dropped without close discards its temp file
    w = dio.TrajectoryWriter(tmp_path / "e.h5")
    w.append(x=1.0)
    with pytest.warns(ResourceWarning):
        del w
        gc.collect()
    assert os.listdir(tmp_path) == ["d.h5"]


def test_trajectory_corrupted_chunk(tmp_path):
    p = tmp_path / "c.h5"
    with dio.TrajectoryWriter(p, chunk_steps=8, compression=None) as w:
        for i in range(64):
            w.append(x=np.full(16, i, np.float64))
    with h5py.File(p, "r") as f:
        info = f["x"].id.get_chunk_info(2)     # steps 16..23
        off = info.byte_offset
    _flip_byte(p, off + 10)
    r = dio.TrajectoryReader(p)
    assert r["x"][:16].shape == (16, 16)       # intact chunks still read
    with pytest.raises(LoadError, match="corrupted"):
        r["x"][:]
    r.close()
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadError):
        dio.TrajectoryReader(p)
