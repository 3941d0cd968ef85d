"""LNL methods, one algorithm a file; each registers itself in bench.registry.METHODS."""

from methods import standard  # noqa: F401
from methods import coteaching  # noqa: F401
from methods import coteaching_plus  # noqa: F401
from methods import decoupling  # noqa: F401
from methods import f_correction  # noqa: F401
from methods import jocor  # noqa: F401
from methods import mentornet  # noqa: F401
from methods import dividemix  # noqa: F401
from methods import self_learning  # noqa: F401
from methods import rsl  # noqa: F401
from methods import rsl_wm  # noqa: F401
