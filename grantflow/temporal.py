"""The Temporal client grantflow uses everywhere, and its custom search attributes."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

# Programme and stage only: nothing that names a person or an institution.
SEARCH_ATTRIBUTES = {
    "ProgrammeId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Stage": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}


async def connect(
    address: str,
    namespace: str = "default",
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """`runtime` serves the SDK's metrics, `interceptors` trace (grantflow/observability/)."""
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        interceptors=interceptors,
    )


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the search attributes the workflows set; returns those added now."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {k: v for k, v in SEARCH_ATTRIBUTES.items() if k not in existing.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)
