"""gunicorn settings for the API, read by gunicorn from the directory it starts in (the image's
command runs in the repository root). Everything else comes from the command line and
GUNICORN_CMD_ARGS (see the Dockerfile)."""

# Access and error lines without secrets: verification tokens in paths and Referers, link
# tokens in query strings, credential headers (project/gunicorn.py).
logger_class = "project.gunicorn.Logger"
