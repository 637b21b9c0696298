"""The MS-ASWBXML code pages 0-25: for each page its namespace name and the
tag name of every token.

Only facts (token value -> tag name) are held here; the codec in wbxml.py
builds its lookup tables from them.  Sources: the MS-ASWBXML section 2.1.2.1
tables (one per code page, "Code Page N: Name").  Checked here against
the specification text for pages 10, 12 and 25 and its encoding example
(pages 0, 1, 17); against a commercial ActiveSync library's published
enumerations for pages 4, 8, 14, 17, 21, 22 and part of 2; and against
pyactivesync's tables (about 290 names on 18 pages, tests/test_eas_wbxml.py).
The rest (AirNotify, ValidateCert, DocumentLibrary, Notes, RightsManagement,
the tail of Provision, Settings, Tasks, Contacts) was not re-read against a
second source in this change.  Tokens that the current specification lists as "not used"
but that older protocol versions (2.5, 12.0) sent are kept under their old
names so that a decoder never rejects a document an old device produces
(``LEGACY`` names them).  Tag tokens are 0x05..0x3F: 0x00-0x04 are the WBXML
global tokens and the two high bits of a tag byte are the attribute and
content flags.
"""
from __future__ import annotations

# page number -> (namespace, {token: tag name})
_PAGES: dict[int, tuple[str, dict[int, str]]] = {}


def _page(number: int, namespace: str, names: str, start: int = 0x05,
          **explicit: int) -> None:
    """Page NUMBER: NAMES (space-separated, "-" for an unused token) take
    consecutive tokens from START; EXPLICIT adds name=token pairs."""
    tokens: dict[int, str] = {}
    for i, name in enumerate(names.split()):
        if name != "-":
            tokens[start + i] = name
    for name, token in explicit.items():
        tokens[token] = name
    _PAGES[number] = (namespace, tokens)


_page(0, "AirSync",
      "Sync Responses Add Change Delete Fetch SyncKey ClientId ServerId Status "
      "Collection Class Version CollectionId GetChanges MoreAvailable WindowSize "
      "Commands Options FilterType Truncation RTFTruncation Conflict Collections "
      "ApplicationData DeletesAsMoves NotifyGUID Supported SoftDelete MIMESupport "
      "MIMETruncation Wait Limit Partial ConversationMode MaxItems HeartbeatInterval")

_page(1, "Contacts",
      "Anniversary AssistantName AssistantPhoneNumber Birthday Body BodySize "
      "BodyTruncated Business2PhoneNumber BusinessAddressCity BusinessAddressCountry "
      "BusinessAddressPostalCode BusinessAddressState BusinessAddressStreet "
      "BusinessFaxNumber BusinessPhoneNumber CarPhoneNumber Categories Category "
      "Children Child CompanyName Department Email1Address Email2Address "
      "Email3Address FileAs FirstName Home2PhoneNumber HomeAddressCity "
      "HomeAddressCountry HomeAddressPostalCode HomeAddressState HomeAddressStreet "
      "HomeFaxNumber HomePhoneNumber JobTitle LastName MiddleName MobilePhoneNumber "
      "OfficeLocation OtherAddressCity OtherAddressCountry OtherAddressPostalCode "
      "OtherAddressState OtherAddressStreet PagerNumber RadioPhoneNumber Spouse "
      "Suffix Title WebPage YomiCompanyName YomiFirstName YomiLastName Rtf Picture "
      "Alias WeightedRank")

_page(2, "Email",
      "Attachment Attachments AttName AttSize Att0Id AttMethod AttRemoved Body "
      "BodySize BodyTruncated DateReceived DisplayName DisplayTo Importance "
      "MessageClass Subject Read To Cc From ReplyTo AllDayEvent Categories Category "
      "DtStamp EndTime InstanceType BusyStatus Location MeetingRequest Organizer "
      "RecurrenceId Reminder ResponseRequested Recurrences Recurrence Type Until "
      "Occurrences Interval DayOfWeek DayOfMonth WeekOfMonth MonthOfYear StartTime "
      "Sensitivity TimeZone GlobalObjId ThreadTopic MIMEData MIMETruncated MIMESize "
      "InternetCPID Flag Status ContentClass FlagType CompleteTime "
      "DisallowNewTimeProposal")

# no longer used by any current protocol version; 2.5 devices sent it
_page(3, "AirNotify",
      "Notify Notification Version LifeTime DeviceInfo Enable Folder ServerId "
      "DeviceAddress ValidCarrierProfiles CarrierProfile Status Responses Devices "
      "Device Id Expiry NotifyGUID DeviceFriendlyName")

_page(4, "Calendar",      # "Timezone" as in the Calendar schema (MS-ASCAL 2.2.2.44)
      "Timezone AllDayEvent Attendees Attendee Email Name Body BodyTruncated "
      "BusyStatus Categories Category Rtf DtStamp EndTime Exception Exceptions "
      "Deleted ExceptionStartTime Location MeetingStatus OrganizerEmail "
      "OrganizerName Recurrence Type Until Occurrences Interval DayOfWeek "
      "DayOfMonth WeekOfMonth MonthOfYear Reminder Sensitivity Subject StartTime "
      "UID AttendeeStatus AttendeeType",
      DisallowNewTimeProposal=0x33, ResponseRequested=0x34, AppointmentReplyTime=0x35,
      ResponseType=0x36, CalendarType=0x37, IsLeapMonth=0x38, FirstDayOfWeek=0x39,
      OnlineMeetingConfLink=0x3A, OnlineMeetingExternalLink=0x3B, ClientUid=0x3C)

_page(5, "Move",
      "MoveItems Move SrcMsgId SrcFldId DstFldId Response Status DstMsgId")

_page(6, "ItemEstimate",
      "GetItemEstimate Version Collections Collection Class CollectionId DateTime "
      "Estimate Response Status")

_page(7, "FolderHierarchy",
      "Folders Folder DisplayName ServerId ParentId Type Response Status "
      "ContentClass Changes Add Delete Update SyncKey FolderCreate FolderDelete "
      "FolderUpdate FolderSync Count Version")

_page(8, "MeetingResponse",
      "CalendarId CollectionId MeetingResponse RequestId Request Result Status "
      "UserResponse Version InstanceId",
      ProposedStartTime=0x12, ProposedEndTime=0x13, SendResponse=0x14)

_page(9, "Tasks",
      "Body BodySize BodyTruncated Categories Category Complete DateCompleted "
      "DueDate UtcDueDate Importance Recurrence Type Start Until Occurrences "
      "Interval DayOfMonth DayOfWeek WeekOfMonth MonthOfYear Regenerate DeadOccur "
      "ReminderSet ReminderTime Sensitivity StartDate UtcStartDate Subject Rtf "
      "OrdinalDate SubOrdinalDate CalendarType IsLeapMonth FirstDayOfWeek")

_page(10, "ResolveRecipients",
      "ResolveRecipients Response Status Type Recipient DisplayName EmailAddress "
      "Certificates Certificate MiniCertificate Options To CertificateRetrieval "
      "RecipientCount MaxCertificates MaxAmbiguousRecipients CertificateCount "
      "Availability StartTime EndTime MergedFreeBusy Picture MaxSize Data "
      "MaxPictures")

_page(11, "ValidateCert",
      "ValidateCert Certificates Certificate CertificateChain CheckCRL Status")

_page(12, "Contacts2",
      "CustomerId GovernmentId IMAddress IMAddress2 IMAddress3 ManagerName "
      "CompanyMainPhone AccountName NickName MMS")

_page(13, "Ping",
      "Ping AutdState Status HeartbeatInterval Folders Folder Id Class MaxFolders")

_page(14, "Provision",
      "Provision Policies Policy PolicyType PolicyKey Data Status RemoteWipe "
      "EASProvisionDoc DevicePasswordEnabled AlphanumericDevicePasswordRequired "
      "RequireStorageCardEncryption PasswordRecoveryEnabled DocumentBrowseEnabled "
      "AttachmentsEnabled MinDevicePasswordLength MaxInactivityTimeDeviceLock "
      "MaxDevicePasswordFailedAttempts MaxAttachmentSize AllowSimpleDevicePassword "
      "DevicePasswordExpiration DevicePasswordHistory AllowStorageCard AllowCamera "
      "RequireDeviceEncryption AllowUnsignedApplications "
      "AllowUnsignedInstallationPackages MinDevicePasswordComplexCharacters "
      "AllowWiFi AllowTextMessaging AllowPOPIMAPEmail AllowBluetooth AllowIrDA "
      "RequireManualSyncWhenRoaming AllowDesktopSync MaxCalendarAgeFilter "
      "AllowHTMLEmail MaxEmailAgeFilter MaxEmailBodyTruncationSize "
      "MaxEmailHTMLBodyTruncationSize RequireSignedSMIMEMessages "
      "RequireEncryptedSMIMEMessages RequireSignedSMIMEAlgorithm "
      "RequireEncryptionSMIMEAlgorithm AllowSMIMEEncryptionAlgorithmNegotiation "
      "AllowSMIMESoftCerts AllowBrowser AllowConsumerEmail AllowRemoteDesktop "
      "AllowInternetSharing UnapprovedInROMApplicationList ApplicationName "
      "ApprovedApplicationList Hash AccountOnlyRemoteWipe")

_page(15, "Search",
      "Search Stores Store Name Query Options Range Status Response Result "
      "Properties Total EqualTo Value And Or FreeText SubstringOp DeepTraversal "
      "LongId RebuildResults LessThan GreaterThan Schema Supported UserName "
      "Password ConversationId Picture MaxSize MaxPictures")

_page(16, "GAL",
      "DisplayName Phone Office Title Company Alias FirstName LastName HomePhone "
      "MobilePhone EmailAddress Picture Status Data")

_page(17, "AirSyncBase",
      "BodyPreference Type TruncationSize AllOrNone - Body Data EstimatedDataSize "
      "Truncated Attachments Attachment DisplayName FileReference Method ContentId "
      "ContentLocation IsInline NativeBodyType ContentType Preview "
      "BodyPartPreference BodyPart Status Add Delete ClientId Content Location "
      "Annotation Street City State Country PostalCode Latitude Longitude Accuracy "
      "Altitude AltitudeAccuracy LocationUri InstanceId")

_page(18, "Settings",
      "Settings Status Get Set Oof OofState StartTime EndTime OofMessage "
      "AppliesToInternal AppliesToExternalKnown AppliesToExternalUnknown Enabled "
      "ReplyMessage BodyType DevicePassword Password DeviceInformation Model IMEI "
      "FriendlyName OS OSLanguage PhoneNumber UserInformation EmailAddresses "
      "SmtpAddress UserAgent EnableOutboundSMS MobileOperator PrimarySmtpAddress "
      "Accounts Account AccountId AccountName UserDisplayName SendDisabled - "
      "RightsManagementInformation")

_page(19, "DocumentLibrary",
      "LinkId DisplayName IsFolder CreationDate LastModifiedDate IsHidden "
      "ContentLength ContentType")

_page(20, "ItemOperations",
      "ItemOperations Fetch Store Options Range Total Properties Data Status "
      "Response Version Schema Part EmptyFolderContents DeleteSubFolders UserName "
      "Password Move DstFldId ConversationId MoveAlways")

_page(21, "ComposeMail",
      "SendMail SmartForward SmartReply SaveInSentItems ReplaceMime - Source "
      "FolderId ItemId LongId InstanceId Mime ClientId Status AccountId - "
      "Forwardees Forwardee ForwardeeName ForwardeeEmail")

_page(22, "Email2",
      "UmCallerID UmUserNotes UmAttDuration UmAttOrder ConversationId "
      "ConversationIndex LastVerbExecuted LastVerbExecutionTime ReceivedAsBcc "
      "Sender CalendarType IsLeapMonth AccountId FirstDayOfWeek MeetingMessageType "
      "- IsDraft Bcc Send")

_page(23, "Notes",
      "Subject MessageClass LastModifiedDate Categories Category")

_page(24, "RightsManagement",
      "RightsManagementSupport RightsManagementTemplates RightsManagementTemplate "
      "RightsManagementLicense EditAllowed ReplyAllowed ReplyAllAllowed "
      "ForwardAllowed ModifyRecipientsAllowed ExtractAllowed PrintAllowed "
      "ExportAllowed ProgrammaticAccessAllowed Owner ContentExpiryDate TemplateID "
      "TemplateName TemplateDescription ContentOwner "
      "RemoveRightsManagementDistribution")

_page(25, "Find",
      "Find SearchId ExecuteSearch MailBoxSearchCriterion Query Status FreeText "
      "Options Range DeepTraversal - - Response Result Properties Preview "
      "HasAttachments Total DisplayCc DisplayBcc GalSearchCriterion",
      MaxPictures=0x20, MaxSize=0x21, Picture=0x22)

# tokens that the current specification marks "not used" (2.5/12.0 names):
# decoded, and encodable, but a server answer should not need them
LEGACY: frozenset[tuple[int, str]] = frozenset(
    [(0, n) for n in ("Version", "Truncation", "RTFTruncation", "NotifyGUID")]
    + [(1, n) for n in ("Body", "BodySize", "BodyTruncated", "Rtf")]
    + [(2, n) for n in ("Attachment", "Attachments", "AttName", "AttSize", "Att0Id",
                        "AttMethod", "AttRemoved", "Body", "BodySize", "BodyTruncated",
                        "MIMEData", "MIMETruncated", "MIMESize")]
    + [(3, n) for n in _PAGES[3][1].values()]
    + [(4, n) for n in ("Body", "BodyTruncated", "Rtf")]
    + [(6, "Version"), (8, "Version"), (14, "DocumentBrowseEnabled")]
    + [(7, n) for n in ("Folders", "Folder", "Response", "ContentClass", "Version")]
    + [(9, n) for n in ("Body", "BodySize", "BodyTruncated", "Rtf")]
    + [(15, n) for n in ("Stores", "SubstringOp", "Schema", "Supported")]
)

# ---- the public tables ------------------------------------------------------

#: page number -> namespace name ("AirSync", ...)
NAMESPACES: dict[int, str] = {n: ns for n, (ns, _) in sorted(_PAGES.items())}
#: namespace name -> page number
PAGE_OF: dict[str, int] = {ns: n for n, ns in NAMESPACES.items()}
#: page number -> {token: tag name}
TAGS: dict[int, dict[int, str]] = {n: dict(sorted(t.items())) for n, (_, t) in sorted(_PAGES.items())}
#: page number -> {tag name: token}
TOKENS: dict[int, dict[str, int]] = {n: {name: tok for tok, name in t.items()}
                                     for n, t in TAGS.items()}


def tag_count() -> int:
    """How many (page, token) pairs the tables define."""
    return sum(len(t) for t in TAGS.values())


def _check() -> None:
    for n, tokens in TAGS.items():
        assert all(0x05 <= t <= 0x3F for t in tokens), n
        assert len(set(tokens.values())) == len(tokens), f"duplicate tag name on page {n}"


_check()
