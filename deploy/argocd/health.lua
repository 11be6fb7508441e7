-- Argo CD health check for vmmem.io VirtualMachineMemory and Hypervisor (one script for both kinds).
-- Install it as resource.customizations.health.vmmem.io_VirtualMachineMemory and
-- resource.customizations.health.vmmem.io_Hypervisor (deploy/argocd/argocd-cm-patch.yaml).
--
-- vmmem's conditions follow kstatus (Ready, Reconciling, Stalled, plus RestartRequired), each with
-- the observedGeneration it was computed from. In order:
--   no status, or status.observedGeneration < metadata.generation   -> Progressing (not seen yet)
--   Stalled=True                  -> Degraded (the spec must change: waiting does not help)
--   Reconciling=True              -> Progressing (its message: e.g. the balloon is inflating)
--   RestartRequired=True or an entry in status.pending (RestartRequired, AwaitingPowerOff)
--                                 -> Healthy, the message lists every pending field: vmmem applied
--                                    all it can; the rest is a human's move (a restart, a power-off).
--                                    Progressing or Suspended would hold later sync waves until then
--                                    (Argo CD moves to the next wave only when a wave is Healthy).
--   Ready=True at this generation -> Healthy
--   anything else                 -> Progressing, with the Ready condition's reason and message
-- A condition computed for an older generation does not count.
-- Written for Lua 5.1 (Argo CD runs gopher-lua); also runs on 5.4.
local hs = {}

local function named(t, key)
  if type(t) ~= "table" then return nil end
  return t[key]
end

local status = named(obj, "status")
local generation = named(named(obj, "metadata"), "generation")

if type(status) ~= "table" or next(status) == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for vmmem to observe the object (no status yet)"
  return hs
end

local observed = status.observedGeneration
if type(generation) == "number" and (type(observed) ~= "number" or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for vmmem to observe generation " .. tostring(generation) ..
    " (status is for generation " .. tostring(observed or "none") .. ")"
  return hs
end

-- Conditions of the current generation, by type.
local conditions = {}
if type(status.conditions) == "table" then
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and type(c.type) == "string" then
      local og = c.observedGeneration
      local current = type(generation) ~= "number" or type(og) ~= "number" or og >= generation
      if current then conditions[c.type] = c end
    end
  end
end

local function isTrue(t)
  local c = conditions[t]
  return c ~= nil and c.status == "True"
end

local function describe(c, fallback)
  if c == nil then return fallback end
  local reason = c.reason
  local message = c.message
  if type(message) == "string" and message ~= "" then
    if type(reason) == "string" and reason ~= "" then return reason .. ": " .. message end
    return message
  end
  if type(reason) == "string" and reason ~= "" then return reason end
  return fallback
end

if isTrue("Stalled") then
  local c = conditions["Stalled"]
  hs.status = "Degraded"
  if type(c.message) == "string" and c.message ~= "" then
    hs.message = c.message
  else
    hs.message = describe(c, "Stalled")
  end
  return hs
end

if isTrue("Reconciling") then
  hs.status = "Progressing"
  hs.message = describe(conditions["Reconciling"], "Reconciling")
  return hs
end

-- Every field waiting for a restart or a power-off, e.g.
-- "maxMemory=16Gi (RestartRequired), memory=12Gi (AwaitingPowerOff)".
local pending = {}
if type(status.pending) == "table" then
  for _, p in ipairs(status.pending) do
    if type(p) == "table" then
      pending[#pending + 1] = tostring(p.field or "?") .. "=" .. tostring(p.value or "?") ..
        " (" .. tostring(p.reason or "Pending") .. ")"
    end
  end
end

if isTrue("RestartRequired") or #pending > 0 then
  hs.status = "Healthy"
  local head
  if #pending > 0 then
    head = "Applied; waiting for a restart or power-off: " .. table.concat(pending, ", ")
  else
    head = "Applied; waiting for a restart"
  end
  local c = conditions["RestartRequired"]
  if c ~= nil and c.status == "True" and type(c.message) == "string" and c.message ~= "" then
    hs.message = head .. ". " .. c.message
  else
    hs.message = head
  end
  return hs
end

local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = "Not ready: " .. describe(ready, "Ready=" .. tostring(ready.status))
else
  hs.message = "Waiting for the Ready condition of generation " .. tostring(generation or observed)
end
return hs
