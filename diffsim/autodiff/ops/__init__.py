"""All ops, by family. Importing this package registers every op and Tensor method and
exports the public op functions (``ds.sin``, ``ds.cat`` ...)."""
from . import elementwise, indexing, linalg, reduction, sampling, shape
from . import _tensor_ns

_FAMILIES = (elementwise, reduction, shape, indexing, linalg, sampling)


def _export():
    names = []
    for mod in _FAMILIES:
        for name, obj in vars(mod).items():
            if name.startswith("_") or not callable(obj) or isinstance(obj, type):
                continue
            if getattr(obj, "__module__", None) == mod.__name__:
                globals()[name] = obj
                names.append(name)
    return names


__all__ = _export()
TENSOR_NS = _tensor_ns.TENSOR_NS = _tensor_ns._build()
