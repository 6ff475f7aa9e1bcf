"""Where the web console is served, named once.

The API function's routes (functions/api/handler.py), the REST API's resources and their throttle
(stacks/constructs/operations.py, stacks/constructs/api.py) and `relay dev`'s router
(relay/local/server.py) all read these names. No imports: the stack loads this module too.
"""

# GET /console: the page. GET /console/{asset}: one of its files (console/ in the repository).
CONSOLE_PATH = "/console"
# The path parameter of GET /console/{asset}: a file name of console/, never a path.
ASSET_PARAMETER = "asset"
