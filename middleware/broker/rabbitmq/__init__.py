"""The RabbitMQ implementation of the broker contract (pika); reached only through
``middleware.broker.factory``, an import contract in pyproject.toml sees to that.

pika types live here and nowhere else in ``middleware``: ``convert`` translates message
properties at the edge, ``connection`` owns the I/O loop, ``publisher`` and ``consumer`` the
asynchronous connections, ``declare``/``manifest``/``session`` the short blocking ones.
"""
