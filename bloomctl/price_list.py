"""The on-demand hourly price of a SageMaker hosting instance, from the AWS Price List Query API (GetProducts).

NOTE: the product attributes used in the filters (``productFamily`` "ML Instance", ``instanceName``,
``regionCode``, ``component`` "Hosting") are those of the published AmazonSageMaker offer files. The tests run
against botocore's Stubber; no call to the live API has been made from this project.
"""

import json
from typing import Any, Iterator

from bloomctl.cost_model import HourlyPrice

# The Price List Query API has endpoints in a few regions only, and each of them serves the prices of all regions.
PRICING_API_REGION = "us-east-1"
SERVICE_CODE = "AmazonSageMaker"
HOURLY_UNIT = "hrs"


class PriceListError(Exception):
    """The Price List returned no single on-demand hourly price. The message names the option to pass instead."""


def hosting_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """Return the GetProducts filters that select one instance type's real-time hosting product in a region."""
    return [
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "component", "Value": "Hosting"},
    ]


def lookup_hourly_price(pricing_client: Any, instance_type: str, region: str) -> HourlyPrice:
    """Return the on-demand USD price per instance hour, or raise ``PriceListError``."""
    prices: set[float] = set()
    publication_dates: set[str] = set()
    for product in _products(pricing_client, instance_type, region):
        prices.update(_on_demand_hourly_prices(product))
        if product.get("publicationDate"):
            publication_dates.add(product["publicationDate"][:10])

    if not prices:
        raise PriceListError(
            f"The AWS Price List has no on-demand SageMaker hosting price for {instance_type} in {region}. "
            "Pass --hourly-price, or set hourlyPriceUsd in cdk.json."
        )
    if len(prices) > 1:
        listed = ", ".join(f"{price:g}" for price in sorted(prices))
        raise PriceListError(
            f"The AWS Price List has several on-demand hosting prices for {instance_type} in {region} ({listed} USD "
            "per hour). Pass the one that applies with --hourly-price."
        )

    published = f", published {max(publication_dates)}" if publication_dates else ""
    source = f"AWS Price List API, SageMaker hosting, {instance_type}, {region}, on-demand{published}"
    return HourlyPrice(usd=prices.pop(), source=source)


def _products(pricing_client: Any, instance_type: str, region: str) -> Iterator[dict]:
    request = {
        "ServiceCode": SERVICE_CODE,
        "Filters": hosting_filters(instance_type, region),
        "FormatVersion": "aws_v1",
    }
    while True:
        response = pricing_client.get_products(**request)
        for item in response.get("PriceList", []):
            yield json.loads(item) if isinstance(item, str) else item

        next_token = response.get("NextToken")
        if not next_token:
            return
        request["NextToken"] = next_token


def _on_demand_hourly_prices(product: dict) -> Iterator[float]:
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is not None and dimension.get("unit", "").lower() == HOURLY_UNIT and float(usd) > 0:
                yield float(usd)
