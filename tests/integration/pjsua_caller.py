"""A real PJSIP softphone (pjsua2-python) as a caller, driven by a small script; run as a subprocess.

    python tests/integration/pjsua_caller.py sip:1000@127.0.0.1:5060 "wait 2; hold; wait 10; unhold; ..."

Steps: `wait S`, `hold` (re-INVITE a=sendonly, PJSIP's own hold), `unhold` (re-INVITE sendrecv),
`dtmf DIGITS` (RFC 4733), `hangup`, `until-disconnected S`. Prints one JSON line per event (call state,
media state, each step) and exits 0 when the script ran; pjsua2 runs its own SIP stack and media, with a null
sound device, all on this thread.
"""

from __future__ import annotations

import json
import sys
import time

import pjsua2 as pj


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, account: pj.Account) -> None:
        super().__init__(account)
        self.disconnected = False

    def onCallState(self, prm: object) -> None:
        info = self.getInfo()
        emit(event="state", state=info.stateText, code=info.lastStatusCode)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm: object) -> None:
        info = self.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO:
                emit(event="media", status=int(media.status))


def pump(endpoint: pj.Endpoint, seconds: float, call: Call | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (call is not None and call.disconnected):
        endpoint.libHandleEvents(20)


def main(target: str, script: str) -> int:
    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.logConfig.level = 1
    config.logConfig.consoleLevel = 1
    endpoint.libInit(config)
    transport = pj.TransportConfig()
    transport.port = 0
    # On loopback, and saying so in its SDP: else PJSIP advertises the host's first interface address,
    # from which it never sends (the bridge accepts media only from the SDP's address unless rtp_nat is on).
    transport.boundAddress = transport.publicAddress = "127.0.0.1"
    endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    endpoint.libStart()
    endpoint.audDevManager().setNullDev()
    account_config = pj.AccountConfig()
    account_config.idUri = "sip:pjsua@127.0.0.1"
    media = account_config.mediaConfig.transportConfig
    media.boundAddress = media.publicAddress = "127.0.0.1"
    account = pj.Account()
    account.create(account_config)
    call = Call(account)
    call.makeCall(target, pj.CallOpParam(True))
    for step in (s.strip() for s in script.split(";") if s.strip()):
        verb, _, argument = step.partition(" ")
        emit(event="step", step=step)
        if verb == "wait":
            pump(endpoint, float(argument), call)
        elif verb == "hold":
            call.setHold(pj.CallOpParam(True))
            pump(endpoint, 0.5, call)
        elif verb == "unhold":
            prm = pj.CallOpParam(True)
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(prm)
            pump(endpoint, 0.5, call)
        elif verb == "dtmf":
            call.dialDtmf(argument)
            pump(endpoint, 0.5, call)
        elif verb == "hangup":
            if not call.disconnected:
                call.hangup(pj.CallOpParam(True))
            pump(endpoint, 1.0, call)
        elif verb == "until-disconnected":
            pump(endpoint, float(argument), call)
            emit(event="disconnected", value=call.disconnected)
        if call.disconnected and verb != "until-disconnected":
            break
    if not call.disconnected:
        call.hangup(pj.CallOpParam(True))
        pump(endpoint, 1.0)
    del call  # before the library goes: its destructor still calls into it
    account.shutdown()
    endpoint.libDestroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
