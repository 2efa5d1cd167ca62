"""The Python ML service the platform calls: an HTTP API (FastAPI, run by uvicorn) over the
registry, warm production models and the research library.

    app.py         `create_app()`: every endpoint, settings from the environment
    predictors.py  which registry version a request names, one warm `serving.Predictor` per version
    jobs.py        backtests, searches and training runs started over HTTP, each a normal run in its own process
    errors.py      the one error shape, naming the field and what is allowed
    limits.py      the request body limit
    trading.html   the trading page's view (`/`): price, prediction, band and the sidebar, from the API
"""
