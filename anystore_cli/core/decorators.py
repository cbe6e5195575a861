"""Cache a function's results in a store: `@anycache`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from anystore_cli.errors import DoesNotExist
from anystore_cli.util.checksum import make_signature_key


def _setup(
    store: Any,
    key_func: Callable[..., str | None] | None,
    model: Any,
    serialization_mode: str | None,
    serialization_func: Callable | None,
    deserialization_func: Callable | None,
    ttl: int | None,
    store_kwargs: dict[str, Any],
) -> tuple[Callable[..., str | None], Any]:
    from anystore_cli.core.store import get_store

    if store is None:
        store = get_store(**store_kwargs)
    store = store.model_copy()
    store.raise_on_nonexist = True
    if model is not None:
        store.model = model
    if serialization_mode is not None:
        store.serialization_mode = serialization_mode
    store.serialization_func = serialization_func or store.serialization_func
    store.deserialization_func = deserialization_func or store.deserialization_func
    store.default_ttl = ttl or store.default_ttl
    return key_func or make_signature_key, store


def anycache(
    func: Callable[..., Any] | None = None,
    store: Any | None = None,
    model: Any | None = None,
    key_func: Callable[..., str | None] | None = None,
    serialization_mode: str | None = "auto",
    serialization_func: Callable | None = None,
    deserialization_func: Callable | None = None,
    ttl: int | None = None,
    use_cache: bool | None = None,
    **store_kwargs: Any,
) -> Callable[..., Any]:
    """Cache a function's result in a store, under a key computed from its arguments.

    Works on plain and `async` functions. If `key_func` returns None the call is not cached.

    Example:
        ```python
        @anycache(store=get_store("redis://localhost"), key_func=lambda x: f"square/{x}")
        def square(x):
            return x * x
        ```

    Args:
        func: The function to wrap (when used as `@anycache` without parentheses)
        store: The store to cache in (default: `get_store(**store_kwargs)`)
        model: Pydantic model to (de)serialize results with
        key_func: Function of the call's arguments returning the cache key
        serialization_mode: "auto", "raw", "pickle", "json"
        serialization_func: Function turning a result into the value to store
        deserialization_func: Function turning stored bytes back into a result
        ttl: Key ttl for backends that support it
        use_cache: Look results up in the cache (default: the `use_cache` setting, env
            `CACHE`); results are always stored
        **store_kwargs: Options for `get_store` (e.g. `uri`)

    Returns:
        The decorated function
    """
    # `serialize_func` was the original library's name for `serialization_func`
    serialization_func = serialization_func or store_kwargs.pop("serialize_func", None)
    resolved_key_func, cache = _setup(
        store, key_func, model, serialization_mode, serialization_func, deserialization_func, ttl, store_kwargs
    )

    if use_cache is None:
        from anystore_cli.core.settings import Settings

        use_cache = Settings().use_cache

    def _lookup(key: str | None) -> Any:
        if key is None or not use_cache:
            raise DoesNotExist("not cached")
        return cache.get(key)

    def _save(key: str | None, result: Any) -> Any:
        if cache.serialization_func is not None:
            result = cache.serialization_func(result)
        if key is not None:
            cache.put(key, result, serialization_func=lambda value: value)
        return result

    def _decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def _async_inner(*args: Any, **kwargs: Any) -> Any:
                key = resolved_key_func(*args, **kwargs)
                try:
                    return _lookup(key)
                except DoesNotExist:
                    return _save(key, await function(*args, **kwargs))

            _async_inner.cache = cache  # type: ignore[attr-defined]
            return _async_inner

        @functools.wraps(function)
        def _inner(*args: Any, **kwargs: Any) -> Any:
            key = resolved_key_func(*args, **kwargs)
            try:
                return _lookup(key)
            except DoesNotExist:
                return _save(key, function(*args, **kwargs))

        _inner.cache = cache  # type: ignore[attr-defined]
        return _inner

    if func is not None:
        return _decorator(func)
    return _decorator


def async_anycache(func: Callable[..., Any] | None = None, **kwargs: Any) -> Callable[..., Any]:
    """`anycache` for coroutine functions (kept for the original library's name)."""
    return anycache(func, **kwargs)
