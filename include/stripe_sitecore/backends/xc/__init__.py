"""Sitecore Experience Commerce (XC 9/10) as a backend (id ``xc``): its Commerce Engine client
(``client``) and its Airflow hook (``hook``) for the ``sitecore_xc_default`` connection.

The operations (a ``SitecoreBackend``) and the report reader plug in on top of the client.
"""
