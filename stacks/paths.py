"""Where the project's files are, for the build-time code (stacks/) and the CLI (relay/): defined once.

The functions find their schemas relative to their own package instead (functions/domain/config.py):
in a Lambda asset there is no project around them.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CDK_JSON = PROJECT_ROOT / "cdk.json"
CDK_OUT = PROJECT_ROOT / "cdk.out"
PYPROJECT = PROJECT_ROOT / "pyproject.toml"
SCHEMA_DIR = PROJECT_ROOT / "schemas"
OPENAPI_PATH = SCHEMA_DIR / "openapi.json"
STATEMACHINE_DIR = PROJECT_ROOT / "statemachines"
