"""The application keys through which the routes reach the distributor's parts."""

from __future__ import annotations

from aiohttp import web

from logdist.distributor.inputs.parsing import ParseProcesses
from logdist.distributor.inputs.syslog import SyslogListener
from logdist.distributor.node import Distributor

DISTRIBUTOR = web.AppKey("distributor", Distributor)
SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])
SYSLOG = web.AppKey("syslog", SyslogListener)
PARSE = web.AppKey("parse", ParseProcesses)
