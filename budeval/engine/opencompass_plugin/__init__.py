"""Code that runs INSIDE the OpenCompass process (its own venv, without budeval installed), not in budeval.

The rendered config puts this folder on that process's import path by its absolute path in the installed package
(like the bundled datasets, see :mod:`budeval.engine.render`); its modules import only the standard library and
OpenCompass 0.5.4. budeval itself never imports them.
"""
