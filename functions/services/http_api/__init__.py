"""The API function's logic: status and listing views (status, operations), answers and errors
(responses, api_errors) and the console's static files (console)."""
