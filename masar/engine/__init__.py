"""The analytics engine: one runner per query kind, reached the same way from Python, the CLI
and ``POST /api/v1/query``. Runners get a QueryContext (the source's warm event frame and a
DuckDB cursor) and return a result with ``to_dict()``; auth, caching of frames and HTTP live
outside them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from masar.engine.context import QueryContext
from masar.engine.correlation import run_correlation
from masar.engine.customer_runners import (
    run_audience,
    run_cohorts,
    run_customer,
    run_ltv,
    run_ltv_fit,
    run_rfm,
    run_rfm_customers,
)
from masar.engine.forecast_runners import run_forecast, run_targets
from masar.engine.funnels import run_funnel, run_funnel_people
from masar.engine.kpis import run_metrics
from masar.engine.leaks import run_leaks
from masar.engine.paths import run_paths
from masar.engine.reports import run_acquisition, run_email, run_platforms, run_products
from masar.errors import InvalidInput
from masar.model.queries import CorrelationQuery, FunnelPeopleQuery, FunnelQuery, LeaksQuery, PathsQuery
from masar.model.sales_queries import (
    AcquisitionQuery,
    AudienceQuery,
    CohortsQuery,
    CustomerQuery,
    EmailQuery,
    ForecastQuery,
    LtvFitQuery,
    LtvQuery,
    MetricsQuery,
    PlatformsQuery,
    ProductsQuery,
    RfmCustomersQuery,
    RfmQuery,
    TargetsQuery,
)

Query = Annotated[
    FunnelQuery
    | FunnelPeopleQuery
    | LeaksQuery
    | PathsQuery
    | CorrelationQuery
    | MetricsQuery
    | ProductsQuery
    | EmailQuery
    | AcquisitionQuery
    | PlatformsQuery
    | CohortsQuery
    | RfmQuery
    | RfmCustomersQuery
    | LtvFitQuery
    | ForecastQuery
    | TargetsQuery
    | AudienceQuery
    | CustomerQuery
    | LtvQuery,
    Field(discriminator="kind"),
]
RUNNERS: dict[str, Callable[[QueryContext, Any], Any]] = {
    "funnel": run_funnel,
    "funnel_people": run_funnel_people,
    "leaks": run_leaks,
    "paths": run_paths,
    "correlation": run_correlation,
    "metrics": run_metrics,
    "products": run_products,
    "email": run_email,
    "acquisition": run_acquisition,
    "platforms": run_platforms,
    "cohorts": run_cohorts,
    "rfm": run_rfm,
    "rfm_customers": run_rfm_customers,
    "ltv_fit": run_ltv_fit,
    "forecast": run_forecast,
    "targets": run_targets,
    "audience": run_audience,
    "customer": run_customer,
    "ltv": run_ltv,
}
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Query)

__all__ = ["Query", "RUNNERS", "parse_query", "QueryContext"]


def parse_query(data: Any) -> Any:
    """A query object from JSON-like data (or a query object), with one clear error when invalid."""
    if not isinstance(data, dict):
        if hasattr(data, "kind"):
            return data
        raise InvalidInput("a query is a JSON object with a kind", code="invalid_query")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise InvalidInput(
            _first_error(exc), code="invalid_query", details={"errors": _errors(exc)}
        ) from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p not in RUNNERS)
    message = err.get("msg", "invalid value").removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "message": e.get("msg", "").removeprefix("Value error, ")}
        for e in exc.errors()
    ]
