"""The lease primitives of the backends that can hold a lock atomically, one module each.

A backend class names its primitive in `capabilities.leases` (`anystore_cli.backends.leases.local:LocalLeases`
and so on); `anystore_cli.services.lock.lease_backend` imports only the one it needs.
"""
