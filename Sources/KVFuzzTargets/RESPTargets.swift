// Fuzz entry points for the RESP module: the request decoder, the reply parser, the inline tokenizer.
import NIOCore
import RESP

extension FuzzTargets {
    /// Limits small enough that inputs of a few hundred bytes reach every one of them.
    static var smallLimits: RESPRequestDecoder.Limits {
        var limits = RESPRequestDecoder.Limits()
        limits.maxBulkLength = 256
        limits.maxArrayLength = 64  // more than an inline line of `maxInlineLength` bytes can hold
        limits.maxInlineLength = 64
        limits.maxRequestBytes = 512
        return limits
    }

    /// What the server sees of a stream of bytes: every request, in order, whichever callback it came through.
    private static func decodeStream(_ chunks: [ArraySlice<UInt8>], limits: RESPRequestDecoder.Limits,
                                     discarding: Bool) throws(FuzzViolation) -> [RESPRequest] {
        var decoder = RESPRequestDecoder()
        decoder.limits = limits
        var buffer = ByteBuffer()
        var requests: [RESPRequest] = []
        for chunk in chunks {
            buffer.writeBytes(chunk)
            decoder.decode(&buffer, inPlace: { request in
                requests.append(.command(request.copied()))
            }, decoded: { requests.append($0) })
            if discarding { buffer.discardReadBytes() }  // as NIO's cumulation does between reads
        }
        for (index, request) in requests.enumerated() {
            if case .protocolError = request, index != requests.count - 1 {
                throw FuzzViolation("RequestDecoder", "a request was decoded after a protocol error: \(requests[index...])")
            }
            if case .command(let arguments) = request, arguments.isEmpty {
                throw FuzzViolation("RequestDecoder", "a command without a name at \(index)")
            }
        }
        return requests
    }

    /// The request decoder: the same bytes decoded whole, in random pieces and byte by byte give the same
    /// requests; nothing follows a protocol error; every command decoded, encoded again as a client would, decodes
    /// to itself.
    public static func requestDecoder(_ data: UnsafeRawBufferPointer) throws(FuzzViolation) {
        let bytes = Array(data)
        var random = InputRandom(data)
        // The first byte picks the limits, so the fuzzer explores both Redis's and tiny ones.
        let limits = bytes.first.map { $0 & 1 == 0 } ?? true ? smallLimits : RESPRequestDecoder.Limits()
        let whole = try decodeStream(bytes.isEmpty ? [] : [bytes[...]], limits: limits, discarding: false)
        let split = try decodeStream(pieces(bytes, maximum: 16, &random), limits: limits, discarding: true)
        guard whole == split else {
            throw FuzzViolation("RequestDecoder", "whole and split decoding differ: \(whole) vs \(split)")
        }
        let single = try decodeStream(pieces(bytes, maximum: 1, &random), limits: limits, discarding: false)
        guard whole == single else {
            throw FuzzViolation("RequestDecoder", "whole and byte-by-byte decoding differ: \(whole) vs \(single)")
        }
        // Round trip: the commands, encoded as multibulk requests, decode to the same commands.
        var encoded: [UInt8] = []
        var commands: [[[UInt8]]] = []
        for case .command(let arguments) in whole {
            commands.append(arguments)
            RESPValue.appendCommand(arguments, to: &encoded)
        }
        let again = try decodeStream(encoded.isEmpty ? [] : [encoded[...]], limits: limits, discarding: false)
        guard again == commands.map(RESPRequest.command) else {
            throw FuzzViolation("RequestDecoder", "commands encoded again decode differently: \(commands) vs \(again)")
        }
    }

    /// The reply parser: `parseAll` over the whole input and an incremental parse over random pieces (parse,
    /// and on `incomplete` wait for more, as the NIO client handler does) find the same replies or the same error,
    /// and consume the same bytes.
    public static func replyParser(_ data: UnsafeRawBufferPointer) throws(FuzzViolation) {
        let bytes = Array(data)
        var random = InputRandom(data)
        let parser = RESPReplyParser()
        let whole: Result<(values: [RESPValue], consumed: Int), RESPParseError>
        do {
            whole = .success(try parser.parseAll(bytes))
        } catch let error as RESPParseError {
            whole = .failure(error)
        } catch {
            throw FuzzViolation("ReplyParser", "parseAll threw something else than a RESPParseError: \(error)")
        }
        if case .failure(.incomplete) = whole { throw FuzzViolation("ReplyParser", "parseAll threw incomplete") }
        if case .success(let result) = whole, result.consumed > bytes.count || result.consumed < 0 {
            throw FuzzViolation("ReplyParser", "parseAll consumed \(result.consumed) of \(bytes.count) bytes")
        }

        var received: [UInt8] = []
        var position = 0
        var values: [RESPValue] = []
        var failure: RESPParseError?
        chunks: for chunk in pieces(bytes, maximum: 64, &random) {
            received.append(contentsOf: chunk)
            while position < received.count {
                var source = RESPBufferSource(received, position: position)
                do {
                    values.append(try parser.parse(from: &source))
                    guard source.position > position else {
                        throw FuzzViolation("ReplyParser", "a reply was parsed from no bytes at \(position)")
                    }
                    position = source.position
                } catch RESPParseError.incomplete {
                    continue chunks
                } catch let error as RESPParseError {
                    failure = error
                    break chunks
                } catch let violation as FuzzViolation {
                    throw violation
                } catch {
                    throw FuzzViolation("ReplyParser", "parse threw something else than a RESPParseError: \(error)")
                }
            }
        }
        switch whole {
        case .success(let result):
            guard failure == nil, result.values == values, result.consumed == position else {
                throw FuzzViolation("ReplyParser", "whole: \(result.values.count) replies over \(result.consumed) bytes; "
                                    + "incremental: \(values.count) over \(position), error \(String(describing: failure))")
            }
        case .failure(let error):
            guard failure == error else {
                throw FuzzViolation("ReplyParser", "whole failed with \(error), incremental with \(String(describing: failure))")
            }
        }
    }

    /// The inline tokenizer: never traps; the arguments of a line it accepts, written again with double quotes
    /// and escapes, split back to the same arguments.
    public static func tokenizer(_ data: UnsafeRawBufferPointer) throws(FuzzViolation) {
        let arguments: [[UInt8]]
        do {
            arguments = try Tokenizer.split(data)
        } catch {
            return  // unbalanced quotes: an error, as it should be
        }
        let viaArray = try? Tokenizer.split(Array(data))
        guard viaArray == arguments else { throw FuzzViolation("Tokenizer", "the array and pointer entry points disagree") }
        var line: [UInt8] = []
        for argument in arguments {
            if !line.isEmpty { line.append(UInt8(ascii: " ")) }
            line.append(contentsOf: quoted(argument))
        }
        let again: [[UInt8]]
        do {
            again = try Tokenizer.split(line)
        } catch {
            throw FuzzViolation("Tokenizer", "re-quoted line '\(escaped(line))' has unbalanced quotes")
        }
        guard again == arguments else {
            throw FuzzViolation("Tokenizer", "'\(escaped(Array(data)))' split to \(arguments), re-quoted '\(escaped(line))' to \(again)")
        }
    }

    /// `argument` in double quotes, with `"` and `\` escaped and every byte outside printable ASCII as `\xHH`.
    static func quoted(_ argument: [UInt8]) -> [UInt8] {
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = [UInt8(ascii: "\"")]
        for byte in argument {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                text += [UInt8(ascii: "\\"), byte]
            case 0x20...0x7E:
                text.append(byte)
            default:
                text += [UInt8(ascii: "\\"), UInt8(ascii: "x"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            }
        }
        text.append(UInt8(ascii: "\""))
        return text
    }
}
