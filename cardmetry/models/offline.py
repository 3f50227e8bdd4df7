"""Keep Ultralytics off the network: the one place that prepares its environment before it is imported.

Ultralytics reads its switches from the environment once, when `ultralytics` is first imported: `YOLO_OFFLINE`
makes its online check answer False (so no analytics events, no Sentry, no auto-install and no asset downloads),
`YOLO_AUTOINSTALL=false` stops `check_requirements` from running pip, and `YOLO_CONFIG_DIR` moves its settings
file and its font folder. Its plots and dataset checks call `check_font("Arial.ttf")`, which downloads Arial into
the config folder unless a file of that name is already there, so a bundled permissively licensed font (DejaVu
Sans, see assets/DejaVuSans-LICENSE.txt) is copied there under that name. The settings in that folder turn off
sync and every logging integration, and point Ultralytics' datasets, weights and runs folders into it, so nothing
is written beside the current directory.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
FONT = ASSETS / "DejaVuSans.ttf"
# The names Ultralytics looks for: Arial for ASCII class names, Arial.Unicode for the others.
FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
ENVIRONMENT = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb", "hub")


def default_config_dir() -> Path:
    """Our Ultralytics config folder: under CARDMETRY_HOME when it is set, else a per-user temporary folder
    (never the user's own ~/.config/Ultralytics, whose settings may have sync or integrations on)."""
    home = os.environ.get("CARDMETRY_HOME")
    if home:
        return Path(home).expanduser().resolve() / "ultralytics"
    return Path(tempfile.gettempdir()) / f"cardmetry-ultralytics-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _install_fonts(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = folder / name
        if not target.is_file() or target.stat().st_size != FONT.stat().st_size:
            shutil.copyfile(FONT, target)


def prepare_ultralytics(config_dir: Path | None = None) -> Path:
    """Set Ultralytics' offline environment, then import it and turn off its sync and integrations; returns the
    folder Ultralytics uses for its settings and fonts (`<config_dir>/Ultralytics`).

    Call it before anything imports `ultralytics`. Where it was imported already (its switches are read at import),
    the same settings are forced on the imported modules instead, and the fonts go where that import looks.
    """
    already_imported = "ultralytics" in sys.modules
    config_dir = Path(config_dir) if config_dir else default_config_dir()
    if not already_imported:
        os.environ.update(ENVIRONMENT)
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
        _install_fonts(config_dir / "Ultralytics")  # before the import: it may look for fonts while loading

    import ultralytics.utils as ul_utils
    import ultralytics.utils.checks as ul_checks

    if already_imported:
        _force_offline(ul_utils, ul_checks)
    folder = Path(ul_utils.USER_CONFIG_DIR)
    _install_fonts(folder)  # where an earlier import looks: the same file Ultralytics would have downloaded
    _quiet_settings(ul_utils.SETTINGS, folder, persist=not already_imported)
    return folder


def _force_offline(*modules: object) -> None:
    """Ultralytics imported before us: overwrite the module-level switches it computed from the environment."""
    os.environ.update(ENVIRONMENT)
    for module in modules:
        for name, value in (("ONLINE", False), ("AUTOINSTALL", False)):
            if hasattr(module, name):
                setattr(module, name, value)


def _quiet_settings(settings: dict, folder: Path, persist: bool) -> None:
    """Sync and integrations off, folders inside ours. `persist`: written to the settings file, which is ours;
    otherwise (an import that reads someone else's settings file) changed in this process only."""
    wanted: dict[str, object] = {key: False for key in _INTEGRATIONS if key in settings}
    wanted["sync"] = False
    for key in ("datasets_dir", "weights_dir", "runs_dir"):
        if key in settings:
            wanted[key] = str(folder / key.removesuffix("_dir"))
    if any(settings.get(key) != value for key, value in wanted.items()):
        if persist:
            settings.update(wanted)  # SettingsManager.update also saves the file
        else:
            dict.update(settings, wanted)


def ultralytics_missing_reason() -> str | None:
    """None when Ultralytics can be imported; otherwise how to install it (without importing it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ultralytics") is not None
    except (ImportError, ValueError):  # a broken install, or the module blocked in sys.modules
        found = False
    if not found:
        return "the ultralytics package is not installed; install the optional extra: pip install -e '.[yolo]'"
    return None
