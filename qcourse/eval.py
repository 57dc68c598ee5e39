"""The former name of :mod:`qcourse.evaluation` (``eval`` shadows a Python builtin): importing
``qcourse.eval`` gives that very module, so ``from qcourse import eval as qeval`` keeps working."""
import sys

from qcourse import evaluation

sys.modules[__name__] = evaluation
